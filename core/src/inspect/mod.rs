//! Reading a request for policy: what an OpenAI request needs (`openai`), whether a KServe v2
//! request fits its model's inputs (`kserve`), and whether a prompt holds sensitive data
//! (`detect`, over every text `scan` reads; `seen`: the keys of an object, to refuse one written
//! twice). Used only when the configuration asks for these checks.

pub mod detect;
pub mod kserve;
pub mod openai;
pub mod scan;
pub mod seen;
