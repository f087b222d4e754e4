//! The engine against regex-lite 0.1, the crate the filter used before: the same patterns
//! refused with the same message, and the same texts matched, on fixed cases for every
//! construct and refusal, on generated patterns and texts, and at the size limit's edge.

use super::Regex;

/// Ours and regex-lite's answers for one pattern: the refusal, or whether each text matches.
fn compare(pattern: &str, texts: &[&str]) {
    let ours = Regex::new(pattern);
    let theirs = regex_lite::Regex::new(pattern);
    match (&ours, &theirs) {
        (Err(ours), Err(theirs)) => assert_eq!(*ours, theirs.to_string(), "{pattern:?}"),
        (Ok(ours), Ok(theirs)) => {
            for text in texts {
                let want = theirs.is_match(text);
                assert_eq!(ours.is_match(text), want, "{pattern:?} on {text:?}");
            }
        }
        _ => panic!(
            "{pattern:?}: ours {:?}, regex-lite {:?}",
            ours.as_ref().err(),
            theirs.as_ref().err().map(ToString::to_string)
        ),
    }
}

const TEXTS: &[&str] = &[
    "",
    "a",
    "A",
    "abc",
    "aBc\n",
    "\r\n",
    "foo\r\nbar",
    "line one\nline 2\n",
    "a_1 b-2",
    "é",
    "aéb",
    "💩x",
    "EMP-123456",
    "x{2}",
    "ZZZZzzzz",
    " \t\x0B\x0C\r",
    "[]^-\\",
    "samwise",
];

#[test]
fn every_construct_matches_as_regex_lite_matched() {
    let patterns = [
        "",
        "a",
        "abc",
        "a|b|c",
        "a|",
        "|",
        "(a)(b)",
        "(?:ab)+",
        "a*",
        "a+?",
        "a??",
        "a{2}",
        "a{2,}",
        "a{1,3}?",
        "a{0}",
        "a{0,0}b",
        "a{1}",
        "(a{0})*",
        "(?:a*)*",
        "(?:a?)+",
        "(|a)+",
        ".",
        "(?s).",
        "(?R).",
        "^abc$",
        "(?m)^line \\d+$",
        "(?mR)^foo$",
        "(?m)$",
        "(?R)$",
        "\\Ab",
        "c\\z",
        "\\bb",
        "\\Bb",
        "\\<a",
        "c\\>",
        "\\b{start}a",
        "\\b{end}",
        "\\b{start-half}b",
        "\\b{end-half}",
        "\\b{2}",
        "[abc]",
        "[^abc]",
        "[a-c]",
        "[]a]",
        "[^]a]",
        "[-a]",
        "[a-]",
        "[---]",
        "[\\[\\]]",
        "[[:alpha:]]",
        "[[:^alpha:]]",
        "[[:lower:]A]",
        "[\\s[:digit:]]",
        "[^\\s\\S]",
        "\\d",
        "\\D",
        "\\s",
        "\\S",
        "\\w",
        "\\W",
        "(?i)abc",
        "(?i)[a-c]",
        "(?i)[^x]",
        "(?i)[X-c]",
        "(?i)\\x41",
        "(?i:a)b",
        "a(?i)b",
        "((?i)a)b",
        "(?i)É",
        "\\x41",
        "\\x{1F4A9}",
        "\\u00E9",
        "\\u{e9}",
        "\\U0001F4A9",
        "\\U{1F4A9}",
        "\\a\\f\\t\\n\\r\\v",
        "\\.\\+\\*\\?\\(\\)\\|",
        "\\-\\&\\~\\#",
        "\\!\\@\\%\\\"\\'\\,\\/\\:\\;\\=\\_\\`",
        "(?x) a b # comment\n c",
        "(?x)[ a ]",
        "(?x)a{ 2 , 3 }",
        "(?x)\\x 4 1",
        "(?P<name>a)",
        "(?<n1>a)(?<n2>b)",
        "(?<é>a)",
        "(?<a.b[c]>x)",
        "(?U)a+",
        "(?u)a",
        "(?-u:\\b).+",
        "EMP-[0-9]{6}",
        "samwise|sam",
        "[\\x{D7FF}\\x{E000}]",
        "[^\\x{D7FF}\\x{E000}]",
        "[^\\x{D7FF}]",
        "[\\x{0}-\\x{10FFFF}]",
        "(?x)a # b\nc",
        "(?x)[a-c# x\n]",
        "[a-\\x{63}]",
        "a**",
        "a+*",
        "a?{2}",
        "(?:)",
        "()",
        "(?:|)",
        "(?i)(?-i)a",
    ];
    for pattern in patterns {
        assert!(
            regex_lite::Regex::new(pattern).is_ok(),
            "{pattern:?} is meant to load"
        );
        compare(pattern, TEXTS);
    }
}

#[test]
fn every_refusal_is_regex_lite_s() {
    let patterns = [
        "(", "(a", ")", "a)", "(?", "(?=a)", "(?!a)", "(?<=a)", "(?<!a)", "(?)", "(?P<",
        "(?P<>a)", "(?P<1a>a)", "(?P<a", "(?P<a>a)(?P<a>b)", "(?z)", "(?--i)", "(?ii)", "(?i",
        "(?i-)", "a{", "a{,2}", "a{99999999999}", "\\x{", "\\x{zz}", "\\x{}", "\\x{110000}",
        "\\x{D800}", "\\x", "\\x4", "\\x4g", "\\uD800", "\\U00110000", "\\", "\\1", "\\pL",
        "\\P{L}", "\\q", "\\e", "*", "+a", "?", "{2}", "a{2", "a{2,", "a{2,3", "a{2x}",
        "a{3,2}", "[", "[a", "[^", "[-", "[]", "[a-", "[a-\\d]", "[\\b]", "[z-a]", "[[a]]",
        "[a&&b]", "[a--b]", "[a~~b]", "\\b{", "\\b{start", "\\b{foo}", "\\b{ x", "a{ }",
        "(?x)a{ }", "[\\x{D7FF}-\\x41]", "(?i)[\\x41-Z]", "(?s-s).", "\\b{start-}",
        "((((((((((((((((((((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))))))))))))))))))))))",
        "a{100000}{100}", "[a-z]{300000}", "(?:a|b|c){50000}{10}", "[\\d-z]", "(?x)\\b { start }", "a{0,4294967295}b",
    ];
    for pattern in patterns {
        assert!(
            regex_lite::Regex::new(pattern).is_err(),
            "{pattern:?} is meant to be refused"
        );
        compare(pattern, TEXTS);
    }
}

/// The smallest count at which `(?:{unit}){n}` goes over the size limit, by bisection.
fn first_refused(unit: &str, accepted: impl Fn(&str) -> bool) -> u32 {
    let (mut ok, mut refused) = (1u32, 4_000_000u32);
    while refused - ok > 1 {
        let mid = ok + (refused - ok) / 2;
        if accepted(&format!("(?:{unit}){{{mid}}}")) {
            ok = mid;
        } else {
            refused = mid;
        }
    }
    refused
}

#[test]
fn the_size_limit_refuses_at_the_same_count() {
    for unit in ["a", "[a-z0-9]", "(a|bc)", "(?<name>x?)", "\\b*"] {
        let theirs = first_refused(unit, |p| regex_lite::Regex::new(p).is_ok());
        let ours = first_refused(unit, |p| Regex::new(p).is_ok());
        assert_eq!(ours, theirs, "{unit}");
    }
}

/// Patterns put together from the syntax's pieces, right and wrong, and texts from the
/// characters those pieces are about.
#[test]
fn generated_patterns_load_refuse_and_match_as_regex_lite() {
    const PIECES: &[&str] = &[
        "a",
        "b",
        "A",
        "z",
        "0",
        "_",
        " ",
        "\n",
        "é",
        "💩",
        ".",
        "^",
        "$",
        "|",
        "(",
        ")",
        "(?:",
        "(?i)",
        "(?m)",
        "(?s)",
        "(?R)",
        "(?x)",
        "(?-i)",
        "(?i:",
        "(?P<n",
        ">",
        "(?<m>",
        "[",
        "]",
        "[^",
        "-",
        "a-z",
        "\\d",
        "\\D",
        "\\s",
        "\\S",
        "\\w",
        "\\W",
        "\\b",
        "\\B",
        "\\A",
        "\\z",
        "\\<",
        "\\>",
        "\\b{start}",
        "\\b{end-half}",
        "{",
        "}",
        "*",
        "+",
        "?",
        "*?",
        "{2}",
        "{1,3}",
        "{0,}",
        "{,2}",
        "{2,1}",
        "{ 2 }",
        ",",
        "\\x41",
        "\\x{1F4A9}",
        "\\u00e9",
        "\\x{D800}",
        "\\",
        "\\.",
        "\\-",
        "[[:alpha:]]",
        "[:^digit:]",
        ":]",
        "&&",
        "--",
        "~~",
        "#",
        "\\p",
        "\\1",
        "(?=",
        "(?",
        "(?)",
        "\t",
        "\r",
        "\\n",
        "\\t",
        "x",
        "-]",
        "\\]",
    ];
    const CHARS: &[&str] = &[
        "a", "b", "A", "Z", "z", "0", "9", "_", " ", "\n", "\r", "é", "💩", "-", "x", "\t",
    ];
    let mut rng = crate::rng::Rng::seed_from_u64(13);
    let mut next = |n: usize| rng.below(n as u64) as usize;
    let mut loaded = 0;
    let mut matched = 0;
    for _ in 0..40_000 {
        let len = 1 + next(8);
        let pattern: String = (0..len).map(|_| PIECES[next(PIECES.len())]).collect();
        let texts: Vec<String> = (0..6)
            .map(|_| (0..next(10)).map(|_| CHARS[next(CHARS.len())]).collect())
            .collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        compare(&pattern, &texts);
        if let Ok(re) = Regex::new(&pattern) {
            loaded += 1;
            matched += texts.iter().filter(|t| re.is_match(t)).count();
        }
    }
    // The generator must exercise both sides: about a third of the patterns load, and a fifth
    // of their texts match (14,634 and 17,552 of 87,804 with this seed).
    assert!(loaded > 10_000, "{loaded} patterns loaded");
    assert!(
        matched > 10_000 && matched < loaded * 6 - 10_000,
        "{matched} texts matched"
    );
}
