//! The etcd semantics the fleet is built on, checked against a real 3-member etcd cluster
//! through its v3 JSON gateway with the core's own requests (`fleet::etcd`): a key created
//! once is created exactly once, from any member and by concurrent creators; a prefix read
//! returns every replica's key; leases end keys; one member down changes nothing.

use inference_router_core::fleet::etcd::{
    create_once, lease_grant, parse_created, parse_lease, parse_put, parse_range, put,
    range_prefix, AnswerError, Request,
};
use integration::etcd::EtcdCluster;

fn send(etcd: &EtcdCluster, member: usize, req: &Request) -> Vec<u8> {
    let body = String::from_utf8(req.body.clone()).unwrap();
    let (status, answer) = etcd
        .post(member, req.path, &body)
        .unwrap_or_else(|e| panic!("etcd member {member}: {} failed: {e}", req.path));
    assert_eq!(
        status, 200,
        "etcd member {member}: {} answered {status}: {answer}",
        req.path
    );
    answer.into_bytes()
}

#[test]
fn a_key_is_created_once_whoever_asks_and_leases_end_it() {
    let etcd = EtcdCluster::start(3);
    let lease = parse_lease(&send(&etcd, 0, &lease_grant(60))).unwrap();
    let key = "/ir-test/spent/17/12345";
    assert_eq!(
        parse_created(&send(&etcd, 0, &create_once(key, b"", Some(lease)))),
        Ok(true)
    );
    // The same id presented through every member, again: refused each time.
    for member in 0..3 {
        assert_eq!(
            parse_created(&send(&etcd, member, &create_once(key, b"", Some(lease)))),
            Ok(false),
            "member {member} created a key that exists"
        );
    }
    // Concurrent creators on every member: exactly one wins.
    let fresh = "/ir-test/spent/17/999";
    let wins: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..9)
            .map(|i| {
                let etcd = &etcd;
                s.spawn(move || parse_created(&send(etcd, i % 3, &create_once(fresh, b"", None))))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| usize::from(h.join().unwrap() == Ok(true)))
            .sum()
    });
    assert_eq!(wins, 1, "{wins} concurrent creators of one key succeeded");
    // A short lease ends its key (spent ids go when their tokens expire); bounded wait.
    let short = parse_lease(&send(&etcd, 1, &lease_grant(1))).unwrap();
    let leased = "/ir-test/spent/1/7";
    assert_eq!(
        parse_created(&send(&etcd, 1, &create_once(leased, b"", Some(short)))),
        Ok(true)
    );
    let gone = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        parse_range(&send(&etcd, 2, &range_prefix(leased)))
            .unwrap()
            .kvs
            .is_empty()
    });
    assert!(gone, "a key on a 1 s lease was still there after 10 s");
    // A key on a lease that does not exist is refused by etcd, never reported as created.
    let refused = send_any_status(&etcd, 1, &create_once("/ir-test/x", b"", Some(42)));
    assert!(
        matches!(parse_created(&refused), Err(AnswerError::Refused(_))),
        "{refused:?}"
    );
}

/// The body whatever the status (etcd answers errors with a status other than 200).
fn send_any_status(etcd: &EtcdCluster, member: usize, req: &Request) -> Vec<u8> {
    let body = String::from_utf8(req.body.clone()).unwrap();
    etcd.post(member, req.path, &body).unwrap().1.into_bytes()
}

#[test]
fn a_prefix_read_sees_every_replica_and_survives_a_member_going_away() {
    let etcd = EtcdCluster::start(3);
    for (member, replica) in ["a", "b", "c"].into_iter().enumerate() {
        let key = format!("/ir-test/stats/chat/{replica}");
        let rev = parse_put(&send(&etcd, member, &put(&key, replica.as_bytes(), None))).unwrap();
        assert!(rev > 0);
    }
    put_outside(&etcd);
    let read = |member: usize| {
        let range = parse_range(&send(&etcd, member, &range_prefix("/ir-test/stats/"))).unwrap();
        range
            .kvs
            .iter()
            .map(|kv| kv.value.clone())
            .collect::<Vec<_>>()
    };
    let all = vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
    assert_eq!(read(2), all);
    etcd.kill(0);
    assert_eq!(read(1), all);
    let rev = parse_put(&send(&etcd, 2, &put("/ir-test/stats/chat/d", b"d", None))).unwrap();
    assert!(rev > 0);
    etcd.restart(0);
    assert_eq!(read(0).len(), 4, "the restarted member caught up");
}

/// A key just past the prefix, which a prefix read must not return.
fn put_outside(etcd: &EtcdCluster) {
    parse_put(&send(etcd, 0, &put("/ir-test/stats0", b"outside", None))).unwrap();
}
