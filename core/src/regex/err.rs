//! The refusals, worded as regex-lite 0.1 worded them: configuration errors users have seen.

pub const TOO_MUCH_NESTING: &str = "pattern has too much nesting";
pub const DUPLICATE_CAPTURE_NAME: &str = "duplicate capture group name";
pub const UNCLOSED_GROUP: &str = "found open group without closing ')'";
pub const UNCLOSED_GROUP_QUESTION: &str = "expected closing ')', but got end of pattern";
pub const UNOPENED_GROUP: &str = "found closing ')' without matching '('";
pub const LOOK_UNSUPPORTED: &str = "look-around is not supported";
pub const EMPTY_FLAGS: &str = "empty flag directive '(?)' is not allowed";
pub const MISSING_GROUP_NAME: &str = "expected capture group name, but got end of pattern";
pub const INVALID_GROUP_NAME: &str = "invalid group name";
pub const UNCLOSED_GROUP_NAME: &str = "expected end of capture group name, but got end of pattern";
pub const EMPTY_GROUP_NAME: &str = "empty capture group names are not allowed";
pub const FLAG_UNRECOGNIZED: &str = "unrecognized inline flag";
pub const FLAG_REPEATED_NEGATION: &str = "inline flag negation cannot be repeated";
pub const FLAG_DUPLICATE: &str = "duplicate inline flag is not allowed";
pub const FLAG_UNEXPECTED_EOF: &str =
    "expected ':' or ')' to end inline flags, but got end of pattern";
pub const FLAG_DANGLING_NEGATION: &str = "inline flags cannot end with negation directive";
pub const DECIMAL_NO_DIGITS: &str = "expected decimal number, but found no digits";
pub const DECIMAL_INVALID: &str = "got invalid decimal number";
pub const HEX_BRACE_INVALID_DIGIT: &str =
    "expected hexadecimal number in braces, but got non-hex digit";
pub const HEX_BRACE_UNEXPECTED_EOF: &str =
    "expected hexadecimal number, but saw end of pattern before closing brace";
pub const HEX_BRACE_EMPTY: &str = "expected hexadecimal number in braces, but got no digits";
pub const HEX_BRACE_INVALID: &str = "got invalid hexadecimal number in braces";
pub const HEX_FIXED_UNEXPECTED_EOF: &str =
    "expected fixed length hexadecimal number, but saw end of pattern first";
pub const HEX_FIXED_INVALID_DIGIT: &str =
    "expected fixed length hexadecimal number, but got non-hex digit";
pub const HEX_FIXED_INVALID: &str = "got invalid fixed length hexadecimal number";
pub const HEX_UNEXPECTED_EOF: &str = "expected hexadecimal number, but saw end of pattern first";
pub const ESCAPE_UNEXPECTED_EOF: &str =
    "saw start of escape sequence, but saw end of pattern before it finished";
pub const BACKREF_UNSUPPORTED: &str = "backreferences are not supported";
pub const UNICODE_CLASS_UNSUPPORTED: &str = "Unicode character classes are not supported";
pub const ESCAPE_UNRECOGNIZED: &str = "unrecognized escape sequence";
pub const UNCOUNTED_REP_SUB_MISSING: &str =
    "uncounted repetition operator must be applied to a sub-expression";
pub const COUNTED_REP_SUB_MISSING: &str =
    "counted repetition operator must be applied to a sub-expression";
pub const COUNTED_REP_UNCLOSED: &str = "found unclosed counted repetition operator";
pub const COUNTED_REP_MIN_UNCLOSED: &str =
    "found incomplete and unclosed counted repetition operator";
pub const COUNTED_REP_COMMA_UNCLOSED: &str =
    "found counted repetition operator with a comma that is unclosed";
pub const COUNTED_REP_MIN_MAX_UNCLOSED: &str =
    "found counted repetition with min and max that is unclosed";
pub const COUNTED_REP_INVALID: &str =
    "expected closing brace for counted repetition, but got something else";
pub const COUNTED_REP_INVALID_RANGE: &str =
    "found counted repetition with a min bigger than its max";
pub const CLASS_UNCLOSED_AFTER_ITEM: &str = "non-empty character class has no closing bracket";
pub const CLASS_INVALID_RANGE_ITEM: &str =
    "character class ranges must start and end with a single character";
pub const CLASS_INVALID_ITEM: &str = "invalid escape sequence in character class";
pub const CLASS_UNCLOSED_AFTER_DASH: &str =
    "non-empty character class has no closing bracket after dash";
pub const CLASS_UNCLOSED_AFTER_NEGATION: &str = "negated character class has no closing bracket";
pub const CLASS_UNCLOSED_AFTER_CLOSING: &str =
    "character class begins with literal ']' but has no closing bracket";
pub const CLASS_INVALID_RANGE: &str = "invalid range in character class";
pub const CLASS_UNCLOSED: &str = "found unclosed character class";
pub const CLASS_NEST_UNSUPPORTED: &str = "nested character classes are not supported";
pub const CLASS_INTERSECTION_UNSUPPORTED: &str = "character class intersection is not supported";
pub const CLASS_DIFFERENCE_UNSUPPORTED: &str = "character class difference is not supported";
pub const CLASS_SYMDIFFERENCE_UNSUPPORTED: &str =
    "character class symmetric difference is not supported";
pub const SPECIAL_WORD_BOUNDARY_UNCLOSED: &str =
    "special word boundary assertion is unclosed or has an invalid character";
pub const SPECIAL_WORD_BOUNDARY_UNRECOGNIZED: &str =
    "special word boundary assertion is unrecognized";
pub const SPECIAL_WORD_OR_REP_UNEXPECTED_EOF: &str =
    "found start of special word boundary or repetition without an end";
pub const SIZE_LIMIT: &str = "compiled regex exceeded size limit";
