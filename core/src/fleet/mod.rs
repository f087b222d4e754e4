//! Learning as one fleet (in progress): what replicas of the filter share through etcd.
//! `etcd` is the wire format of etcd's v3 HTTP/JSON gateway as the fleet will speak it.

pub mod etcd;
