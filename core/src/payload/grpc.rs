//! gRPC requests: which RPC a path names, and the model name and version inside the first
//! length-prefixed message of the body, read in protobuf wire format without decoding the rest
//! (borrowing, no allocation but the two strings).
//!
//! - `inference.GRPCInferenceService` (KServe v2 / Open Inference Protocol, Triton): the model
//!   RPCs' requests carry the name in field 1 and the version in field 2 (`ModelInferRequest`:
//!   `model_name`, `model_version`; `ModelReadyRequest`, `ModelMetadataRequest`,
//!   `ModelConfigRequest`, `ModelStatisticsRequest`: `name`, `version`).
//! - `tensorflow.serving.PredictionService` / `ModelService`: `model_spec` (field 1), a
//!   `ModelSpec` with `name` (1), `version` (2, an `Int64Value` whose field 1 is the number) and
//!   `version_label` (4).
//!
//! Protobuf writers emit fields in field-number order, so the routing fields come first: a
//! message is read as far as the bytes at hand go, and once a later field shows, the routing
//! fields are known without the rest (a tensor of any size behind them is never waited for).

/// Whether a `content-type` is gRPC with protobuf messages.
pub fn is_grpc(content_type: &str) -> bool {
    matches!(
        super::media_type(content_type).as_str(),
        "application/grpc" | "application/grpc+proto"
    )
}

/// Where the model of an RPC is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    /// A KServe v2 model RPC: name and version are fields 1 and 2.
    KServeModel,
    /// A TF-Serving RPC with a `model_spec` in field 1.
    TfServingModel,
    /// The streaming infer RPC: a KServe model RPC whose body never ends.
    KServeStream,
    /// An RPC of a known service that names no model (`ServerLive`, `ServerReady`, …): the
    /// default model's.
    Server,
    /// Any other service (Seldon's, yours): routed by headers and path.
    Other,
}

impl Rpc {
    /// Whether the first message names the model.
    pub fn names_model(self) -> bool {
        matches!(
            self,
            Rpc::KServeModel | Rpc::KServeStream | Rpc::TfServingModel
        )
    }
}

/// The RPC of a gRPC path (`/<package>.<Service>/<Method>`).
pub fn rpc_of(path: &str) -> Rpc {
    let path = path.split('?').next().unwrap_or_default();
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return Rpc::Other;
    };
    match service {
        "inference.GRPCInferenceService" => match method {
            "ModelInfer" | "ModelReady" | "ModelMetadata" | "ModelConfig" | "ModelStatistics" => {
                Rpc::KServeModel
            }
            "ModelStreamInfer" => Rpc::KServeStream,
            _ => Rpc::Server,
        },
        "tensorflow.serving.PredictionService" => match method {
            "Predict" | "Classify" | "Regress" | "GetModelMetadata" => Rpc::TfServingModel,
            _ => Rpc::Server,
        },
        "tensorflow.serving.ModelService" => match method {
            "GetModelStatus" => Rpc::TfServingModel,
            _ => Rpc::Server,
        },
        _ => Rpc::Other,
    }
}

/// gRPC status codes the filter answers with.
pub mod code {
    pub const OK: u32 = 0;
    pub const UNKNOWN: u32 = 2;
    pub const INVALID_ARGUMENT: u32 = 3;
    pub const NOT_FOUND: u32 = 5;
    pub const PERMISSION_DENIED: u32 = 7;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const FAILED_PRECONDITION: u32 = 9;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const UNAUTHENTICATED: u32 = 16;
}

/// The gRPC status of one of the filter's replies, from its HTTP status and error code.
pub fn status_for(http: u16, error: &str) -> u32 {
    match (http, error) {
        (404, _) => code::NOT_FOUND,
        (422, "budget_unmet") | (413 | 429, _) => code::RESOURCE_EXHAUSTED,
        (422, _) => code::FAILED_PRECONDITION,
        (401, _) => code::UNAUTHENTICATED,
        (403, _) => code::PERMISSION_DENIED,
        (405, _) | (200..=299, _) => code::UNIMPLEMENTED,
        (502..=504, _) => code::UNAVAILABLE,
        (400..=499, _) => code::INVALID_ARGUMENT,
        (500..=599, _) => code::INTERNAL,
        _ => code::UNKNOWN,
    }
}

/// The HTTP status a `grpc-status` stands for (as grpc-gateway maps them), so a gRPC answer
/// teaches rewards and health what the same failure over HTTP would.
pub fn http_equivalent(grpc_status: u32) -> u16 {
    match grpc_status {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

/// The routing fields of a first message. Empty strings count as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    pub name: Option<String>,
    /// KServe `model_version`, TF-Serving `version` (as its decimal digits) or `version_label`.
    pub version: Option<String>,
}

/// The body fields of a gRPC request that rules may test: `/model_name` and `/model_version`
/// (TF-Serving's `model_spec` name and version or label under the same names).
pub fn fields(pointers: &crate::payload::PointerSet, routing: &Routing) -> crate::payload::Fields {
    let mut fields = crate::payload::Fields::with_len(pointers.len());
    for (i, p) in pointers.iter().enumerate() {
        let value = match p {
            "/model_name" => routing.name.clone(),
            "/model_version" => routing.version.clone(),
            _ => None,
        };
        if let Some(v) = value {
            fields.set(i, crate::json::Value::String(v));
        }
    }
    fields
}

/// What reading the start of a gRPC body gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// The bytes so far do not hold the routing fields yet.
    NeedMore,
    Done(Routing),
    /// The first message is compressed (`grpc-encoding`): not read.
    Compressed,
    /// Not a gRPC message of this RPC; why.
    Malformed(&'static str),
}

const PREFIX: usize = 5;

/// Reads the routing fields of the first message of `body` (`complete`: no more bytes will
/// come).
pub fn read_first(rpc: Rpc, body: &[u8], complete: bool) -> Read {
    let Some((flag, len, rest)) = prefix(body) else {
        return if complete {
            Read::Malformed("the body is not a length-prefixed gRPC message")
        } else {
            Read::NeedMore
        };
    };
    match flag {
        0 => {}
        1 => return Read::Compressed,
        _ => return Read::Malformed("the gRPC message prefix has an unknown flag"),
    }
    let whole = rest.len() >= len;
    let message = rest.get(..len).unwrap_or(rest);
    if !whole && complete {
        return Read::Malformed("the gRPC message is shorter than its prefix says");
    }
    let fields = match rpc {
        Rpc::TfServingModel => model_spec(message, whole),
        _ => name_and_version(message, whole),
    };
    match fields {
        Ok(Some(r)) => Read::Done(r),
        Ok(None) if whole => Read::Malformed("the gRPC message ends inside a field"),
        Ok(None) => Read::NeedMore,
        Err(why) => Read::Malformed(why),
    }
}

/// The length of the body's first message with its prefix, once the prefix is in.
pub fn first_frame_len(body: &[u8]) -> Option<usize> {
    let (_, len, _) = prefix(body)?;
    len.checked_add(PREFIX)
}

/// A message's 5-byte prefix (compressed flag, then the length, big-endian) and what follows.
fn prefix(body: &[u8]) -> Option<(u8, usize, &[u8])> {
    let (head, rest) = body.split_first_chunk::<PREFIX>()?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    Some((head[0], usize::try_from(len).unwrap_or(usize::MAX), rest))
}

/// The messages of a gRPC body, uncompressed ones only; `Err` when one is compressed or the
/// framing is broken.
pub fn messages(body: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let Some((flag, len, after)) = prefix(rest) else {
            return Err("a gRPC message prefix is cut short");
        };
        if flag != 0 {
            return Err("compressed");
        }
        let Some(message) = after.get(..len) else {
            return Err("a gRPC message is shorter than its prefix says");
        };
        out.push(message);
        rest = after.get(len..).unwrap_or_default();
    }
    Ok(out)
}

/// A field of a message, as the wire has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32,
    /// The bytes end inside this field: its number is known, not its value.
    Cut,
}

/// The fields of a message, in wire order; `cut` once the bytes ended inside one (the last
/// field is then [`Field::Cut`], or nothing when even its tag is cut).
pub struct Fields<'a> {
    bytes: &'a [u8],
    pub cut: bool,
}

impl<'a> Fields<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Fields { bytes, cut: false }
    }

    /// The next `(number, field)`; `None` at the end or where the bytes are cut.
    pub fn next_field(&mut self) -> Result<Option<(u64, Field<'a>)>, &'static str> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        let Some((tag, rest)) = varint(self.bytes) else {
            self.cut = true;
            self.bytes = &[];
            return Ok(None);
        };
        let number = tag >> 3;
        if number == 0 {
            return Err("a protobuf field has number 0");
        }
        let (field, rest) = match tag & 7 {
            0 => match varint(rest) {
                Some((v, r)) => (Field::Varint(v), r),
                None => return self.cut_here(number),
            },
            1 => match rest.get(8..) {
                Some(r) => (Field::Fixed64, r),
                None => return self.cut_here(number),
            },
            2 => {
                let Some((len, r)) = varint(rest) else {
                    return self.cut_here(number);
                };
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                match (r.get(..len), r.get(len..)) {
                    (Some(b), Some(after)) => (Field::Bytes(b), after),
                    _ => return self.cut_here(number),
                }
            }
            5 => match rest.get(4..) {
                Some(r) => (Field::Fixed32, r),
                None => return self.cut_here(number),
            },
            _ => return Err("a protobuf field has a wire type this reader does not take (groups)"),
        };
        self.bytes = rest;
        Ok(Some((number, field)))
    }

    fn cut_here(&mut self, number: u64) -> Result<Option<(u64, Field<'a>)>, &'static str> {
        self.cut = true;
        self.bytes = &[];
        Ok(Some((number, Field::Cut)))
    }
}

/// A varint and what follows it; `None` when the bytes end inside it (or it is over 10 bytes).
fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, bytes.get(i + 1..).unwrap_or_default()));
        }
    }
    None
}

fn text(bytes: &[u8]) -> Result<Option<String>, &'static str> {
    let s = std::str::from_utf8(bytes).map_err(|_| "a model name or version is not UTF-8")?;
    Ok((!s.is_empty()).then(|| s.to_string()))
}

/// KServe: fields 1 and 2. `Ok(None)`: not known yet from the bytes at hand.
fn name_and_version(message: &[u8], whole: bool) -> Result<Option<Routing>, &'static str> {
    let mut fields = Fields::new(message);
    let mut routing = Routing::default();
    while let Some((number, field)) = fields.next_field()? {
        match (number, field) {
            (1 | 2, Field::Cut) => return Ok(None),
            (1, Field::Bytes(b)) => routing.name = text(b)?,
            (2, Field::Bytes(b)) => routing.version = text(b)?,
            (1 | 2, _) => return Err("a model name or version is not a string"),
            // Fields come in number order: the routing fields are behind us.
            _ if !whole => return Ok(Some(routing)),
            _ => {}
        }
    }
    Ok((whole && !fields.cut).then_some(routing))
}

/// TF-Serving: `model_spec` in field 1.
fn model_spec(message: &[u8], whole: bool) -> Result<Option<Routing>, &'static str> {
    let mut fields = Fields::new(message);
    let mut routing = None;
    while let Some((number, field)) = fields.next_field()? {
        match (number, field) {
            (1, Field::Cut) => return Ok(None),
            (1, Field::Bytes(spec)) => routing = Some(spec_fields(spec)?),
            (1, _) => return Err("model_spec is not a message"),
            _ if !whole => return Ok(Some(routing.unwrap_or_default())),
            _ => {}
        }
    }
    if whole && !fields.cut {
        return Ok(Some(routing.unwrap_or_default()));
    }
    Ok(None)
}

fn spec_fields(spec: &[u8]) -> Result<Routing, &'static str> {
    let mut fields = Fields::new(spec);
    let mut routing = Routing::default();
    let mut label = None;
    while let Some((number, field)) = fields.next_field()? {
        match (number, field) {
            (1, Field::Bytes(b)) => routing.name = text(b)?,
            (2, Field::Bytes(v)) => routing.version = int64_value(v)?.map(|n| n.to_string()),
            (4, Field::Bytes(b)) => label = text(b)?,
            (1 | 2 | 4, _) => return Err("model_spec has a field of the wrong type"),
            _ => {}
        }
    }
    if fields.cut {
        return Err("model_spec is cut short");
    }
    routing.version = routing.version.or(label);
    Ok(routing)
}

/// `google.protobuf.Int64Value`: field 1, a varint (two's complement for negatives).
fn int64_value(bytes: &[u8]) -> Result<Option<i64>, &'static str> {
    let mut fields = Fields::new(bytes);
    let mut value = None;
    while let Some((number, field)) = fields.next_field()? {
        if let (1, Field::Varint(v)) = (number, field) {
            value = Some(i64::from_le_bytes(v.to_le_bytes()));
        }
    }
    if fields.cut {
        return Err("model_spec.version is cut short");
    }
    // Proto3: an Int64Value present with no field is 0.
    Ok(Some(value.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len_field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![u8::try_from(number << 3 | 2).unwrap()];
        out.push(u8::try_from(bytes.len()).unwrap());
        out.extend_from_slice(bytes);
        out
    }

    fn frame(message: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    fn routing(name: &str, version: Option<&str>) -> Read {
        Read::Done(Routing {
            name: Some(name.into()),
            version: version.map(str::to_string),
        })
    }

    #[test]
    fn rpcs() {
        assert_eq!(
            rpc_of("/inference.GRPCInferenceService/ModelInfer"),
            Rpc::KServeModel
        );
        assert_eq!(
            rpc_of("/inference.GRPCInferenceService/ModelStreamInfer"),
            Rpc::KServeStream
        );
        assert_eq!(
            rpc_of("/inference.GRPCInferenceService/ServerLive"),
            Rpc::Server
        );
        assert_eq!(
            rpc_of("/tensorflow.serving.PredictionService/Predict"),
            Rpc::TfServingModel
        );
        assert_eq!(
            rpc_of("/tensorflow.serving.ModelService/GetModelStatus"),
            Rpc::TfServingModel
        );
        assert_eq!(rpc_of("/seldon.protos.Seldon/Predict"), Rpc::Other);
        assert_eq!(rpc_of("/"), Rpc::Other);
        assert!(is_grpc("application/grpc"));
        assert!(is_grpc("application/grpc+proto; charset=x"));
        assert!(!is_grpc("application/grpc+json"));
    }

    #[test]
    fn kserve_fields_from_a_prefix() {
        let mut message = len_field(1, b"iris");
        message.extend(len_field(2, b"v2"));
        message.extend(len_field(5, &[7; 100]));
        let body = frame(&message);
        assert_eq!(
            read_first(Rpc::KServeModel, &body, true),
            routing("iris", Some("v2"))
        );
        // The tensor behind the routing fields is not waited for.
        assert_eq!(
            read_first(Rpc::KServeModel, &body[..20], false),
            routing("iris", Some("v2"))
        );
        // Cut inside the version: more is needed.
        assert_eq!(
            read_first(Rpc::KServeModel, &body[..10], false),
            Read::NeedMore
        );
        assert_eq!(
            read_first(Rpc::KServeModel, &body[..3], false),
            Read::NeedMore
        );
        assert!(matches!(
            read_first(Rpc::KServeModel, &body[..10], true),
            Read::Malformed(_)
        ));
        // No version; fields out of order in a whole message.
        let mut message = len_field(3, b"id-1");
        message.extend(len_field(1, b"wine"));
        assert_eq!(
            read_first(Rpc::KServeModel, &frame(&message), true),
            routing("wine", None)
        );
        // Empty message: no model named.
        assert_eq!(
            read_first(Rpc::KServeModel, &frame(&[]), true),
            Read::Done(Routing::default())
        );
    }

    #[test]
    fn tf_serving_model_spec() {
        let version = [0x08, 0x03]; // Int64Value{value: 3}
        let mut spec = len_field(1, b"half");
        spec.extend(len_field(2, &version));
        let mut message = len_field(1, &spec);
        message.extend(len_field(2, b"inputs..."));
        assert_eq!(
            read_first(Rpc::TfServingModel, &frame(&message), true),
            routing("half", Some("3"))
        );
        let mut spec = len_field(1, b"half");
        spec.extend(len_field(4, b"canary"));
        let message = len_field(1, &spec);
        assert_eq!(
            read_first(Rpc::TfServingModel, &frame(&message), true),
            routing("half", Some("canary"))
        );
    }

    #[test]
    fn malformed_and_compressed() {
        assert_eq!(
            read_first(Rpc::KServeModel, &[1, 0, 0, 0, 1, 0], true),
            Read::Compressed
        );
        assert!(matches!(
            read_first(Rpc::KServeModel, &[9, 0, 0, 0, 0], true),
            Read::Malformed(_)
        ));
        assert!(matches!(
            read_first(Rpc::KServeModel, &[0xff, 0xff, 0xff], true),
            Read::Malformed(_)
        ));
        // A name that is not a string, a group, field number 0, bad UTF-8.
        for message in [
            vec![0x08, 0x01],
            vec![0x0b],
            vec![0x02, 0x00],
            vec![0x0a, 0x01, 0xff],
        ] {
            assert!(
                matches!(
                    read_first(Rpc::KServeModel, &frame(&message), true),
                    Read::Malformed(_)
                ),
                "{message:?}"
            );
        }
        assert_eq!(
            messages(&[frame(b"a"), frame(b"bc")].concat()),
            Ok(vec![&b"a"[..], b"bc"])
        );
        assert!(messages(&[0, 0, 0, 0, 5, 1]).is_err());
    }
}
