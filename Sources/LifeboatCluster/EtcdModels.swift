public import Foundation

// The values etcd v3's JSON gateway sends and takes. On the wire: keys and values are base64
// (`Data`'s default coding), int64 fields are strings in responses (lease IDs exceed 2^53, so
// they are parsed from the string, never through Double), and zero or false fields are left
// out, so every decoded field has a default.

/// Which keys an operation names: one key, or every key that starts with a prefix.
public enum EtcdKeys: Sendable, Equatable {
    case key(String)
    case prefix(String)

    /// `key` and `range_end` as the gateway takes them (`range_end` nil for one key).
    var wire: (key: Data, rangeEnd: Data?) {
        switch self {
        case .key(let key): return (Data(key.utf8), nil)
        case .prefix(let prefix): return (Data(prefix.utf8), EtcdKeys.rangeEnd(ofPrefix: Array(prefix.utf8)))
        }
    }

    /// The first key after every key that starts with `prefix`: its last byte below 0xff plus
    /// one, the rest cut; "\0" (every key) when there is no such byte.
    static func rangeEnd(ofPrefix prefix: [UInt8]) -> Data {
        var end = prefix
        while let last = end.last {
            if last < 0xff {
                end[end.count - 1] = last + 1
                return Data(end)
            }
            end.removeLast()
        }
        return Data([0])
    }
}

/// One stored key.
public struct EtcdKeyValue: Sendable, Equatable {
    public var key: String
    public var value: Data
    /// The revision that created the key (0: the key is absent).
    public var createRevision: Int64
    /// The revision of the key's last change.
    public var modRevision: Int64
    /// How many times the key was written since it was created.
    public var version: Int64
    /// The lease the key is attached to (0: none).
    public var lease: Int64
}

/// A range's answer.
public struct EtcdRangeResult: Sendable, Equatable {
    /// The store's revision at the read.
    public var revision: Int64
    public var kvs: [EtcdKeyValue]
    /// More keys matched than `limit` returned.
    public var more: Bool
    public var count: Int64
}

/// One condition of a transaction: the key's field compared with a value.
public struct EtcdCompare: Sendable, Equatable {
    public enum Target: Sendable, Equatable {
        case version(Int64)
        case createRevision(Int64)
        case modRevision(Int64)
        case value(Data)
        case lease(Int64)
    }
    public enum Result: String, Sendable, Equatable {
        case equal = "EQUAL"
        case notEqual = "NOT_EQUAL"
        case greater = "GREATER"
        case less = "LESS"
    }

    public var key: String
    public var result: Result
    public var target: Target

    public init(_ key: String, _ target: Target, _ result: Result = .equal) {
        self.key = key
        self.result = result
        self.target = target
    }
}

/// One operation of a transaction's branch.
public enum EtcdOperation: Sendable, Equatable {
    case put(key: String, value: Data, lease: Int64 = 0)
    case range(EtcdKeys)
    case delete(EtcdKeys)
}

/// What one operation of the branch that ran answered.
public enum EtcdOperationResult: Sendable, Equatable {
    case put(revision: Int64)
    case range(EtcdRangeResult)
    case delete(deleted: Int64)
}

/// A transaction's answer: which branch ran and what its operations answered.
public struct EtcdTxnResult: Sendable, Equatable {
    /// True when every compare held (the success branch ran).
    public var succeeded: Bool
    /// The store's revision after the transaction.
    public var revision: Int64
    public var results: [EtcdOperationResult]
}

/// A granted lease.
public struct EtcdLeaseGrant: Sendable, Equatable {
    public var id: Int64
    /// Seconds granted (etcd raises a TTL below its minimum).
    public var ttl: Int64
}

/// What `timetolive` says about a live lease.
public struct EtcdLeaseStatus: Sendable, Equatable {
    public var id: Int64
    /// Seconds left.
    public var ttl: Int64
    public var grantedTTL: Int64
    public var keys: [String]
}

/// One member of the etcd cluster.
public struct EtcdMember: Sendable, Equatable {
    public var id: UInt64
    public var name: String
    public var peerURLs: [String]
    public var clientURLs: [String]
    public var isLearner: Bool
}

/// One member's view of itself (`maintenance/status`).
public struct EtcdStatus: Sendable, Equatable {
    /// The endpoint that answered.
    public var endpoint: String
    public var version: String
    public var memberID: UInt64
    /// The leader's member id; 0 when the member knows no leader.
    public var leader: UInt64
    public var dbSize: Int64
    public var raftIndex: UInt64
    public var raftTerm: UInt64
    /// Alarms and errors the member reports (empty when healthy).
    public var errors: [String]
}

// MARK: - decoding

extension KeyedDecodingContainer {
    /// An int64 field sent as a string (or a number); 0 when left out.
    func int64(_ key: Key) throws -> Int64 {
        guard contains(key), try !decodeNil(forKey: key) else { return 0 }
        if let number = try? decode(Int64.self, forKey: key) { return number }
        let text = try decode(String.self, forKey: key)
        guard let value = Int64(text) else {
            throw DecodingError.dataCorruptedError(
                forKey: key, in: self, debugDescription: "'\(text)' is not an int64")
        }
        return value
    }

    /// A uint64 field (member ids) sent as a string (or a number); 0 when left out.
    func uint64(_ key: Key) throws -> UInt64 {
        guard contains(key), try !decodeNil(forKey: key) else { return 0 }
        if let number = try? decode(UInt64.self, forKey: key) { return number }
        let text = try decode(String.self, forKey: key)
        guard let value = UInt64(text) else {
            throw DecodingError.dataCorruptedError(
                forKey: key, in: self, debugDescription: "'\(text)' is not a uint64")
        }
        return value
    }

    func value<T: Decodable>(_ key: Key, default fallback: T) throws -> T {
        try decodeIfPresent(T.self, forKey: key) ?? fallback
    }
}

/// The header every answer carries.
struct EtcdHeader: Decodable {
    var revision: Int64 = 0
    var memberID: UInt64 = 0

    enum CodingKeys: String, CodingKey {
        case revision
        case memberID = "member_id"
    }

    init() {}

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        revision = try container.int64(.revision)
        memberID = try container.uint64(.memberID)
    }
}

extension EtcdKeyValue: Decodable {
    enum CodingKeys: String, CodingKey {
        case key, value, version, lease
        case createRevision = "create_revision"
        case modRevision = "mod_revision"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        key = String(decoding: try container.value(.key, default: Data()), as: UTF8.self)
        value = try container.value(.value, default: Data())
        createRevision = try container.int64(.createRevision)
        modRevision = try container.int64(.modRevision)
        version = try container.int64(.version)
        lease = try container.int64(.lease)
    }
}

extension EtcdRangeResult: Decodable {
    enum CodingKeys: String, CodingKey {
        case header, kvs, more, count
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        revision = try container.value(.header, default: EtcdHeader()).revision
        kvs = try container.value(.kvs, default: [])
        more = try container.value(.more, default: false)
        count = try container.int64(.count)
    }
}

/// A put's or a delete's answer.
struct EtcdWriteResponse: Decodable {
    var header = EtcdHeader()
    var deleted: Int64 = 0

    enum CodingKeys: String, CodingKey {
        case header, deleted
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        header = try container.value(.header, default: EtcdHeader())
        deleted = try container.int64(.deleted)
    }
}

extension EtcdTxnResult: Decodable {
    enum CodingKeys: String, CodingKey {
        case header, succeeded, responses
    }

    /// One entry of `responses`: exactly one of its fields is set.
    struct Response: Decodable {
        var result: EtcdOperationResult

        enum CodingKeys: String, CodingKey {
            case put = "response_put"
            case range = "response_range"
            case delete = "response_delete_range"
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            if let put = try container.decodeIfPresent(EtcdWriteResponse.self, forKey: .put) {
                result = .put(revision: put.header.revision)
            } else if let range = try container.decodeIfPresent(EtcdRangeResult.self, forKey: .range) {
                result = .range(range)
            } else if let delete = try container.decodeIfPresent(EtcdWriteResponse.self, forKey: .delete) {
                result = .delete(deleted: delete.deleted)
            } else {
                throw DecodingError.dataCorrupted(
                    .init(codingPath: decoder.codingPath, debugDescription: "a txn response of an unknown kind"))
            }
        }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        revision = try container.value(.header, default: EtcdHeader()).revision
        succeeded = try container.value(.succeeded, default: false)
        results = try container.value(.responses, default: [Response]()).map(\.result)
    }
}

/// `lease/grant`, `lease/keepalive` (inside `result`) and `lease/timetolive` answers.
struct EtcdLeaseResponse: Decodable {
    var id: Int64 = 0
    /// Nil when left out: a keepalive of a lease that is gone.
    var ttl: Int64?
    var grantedTTL: Int64 = 0
    var keys: [Data] = []

    enum CodingKeys: String, CodingKey {
        case id = "ID"
        case ttl = "TTL"
        case grantedTTL
        case keys
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.int64(.id)
        ttl = container.contains(.ttl) ? try container.int64(.ttl) : nil
        grantedTTL = try container.int64(.grantedTTL)
        keys = try container.value(.keys, default: [])
    }
}

/// A streamed answer: one message of `{"result": …}` or `{"error": …}`.
struct EtcdStreamed<Result: Decodable>: Decodable {
    var result: Result?
    var error: EtcdErrorBody?
}

/// The body of an error answer: unary (`error`, `message`, `code`) or streamed
/// (`grpc_code`, `http_code`, `message`).
struct EtcdErrorBody: Decodable {
    var message: String = ""
    var code: Int = 0

    enum CodingKeys: String, CodingKey {
        case error, message, code
        case grpcCode = "grpc_code"
    }

    init(message: String, code: Int = 0) {
        self.message = message
        self.code = code
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let error = try? container.decodeIfPresent(String.self, forKey: .error)
        message = try container.decodeIfPresent(String.self, forKey: .message) ?? error ?? ""
        code =
            try container.decodeIfPresent(Int.self, forKey: .code) ?? container.decodeIfPresent(
                Int.self, forKey: .grpcCode) ?? 0
    }
}

extension EtcdMember: Decodable {
    enum CodingKeys: String, CodingKey {
        case id = "ID"
        case name, peerURLs, clientURLs, isLearner
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.uint64(.id)
        name = try container.value(.name, default: "")
        peerURLs = try container.value(.peerURLs, default: [])
        clientURLs = try container.value(.clientURLs, default: [])
        isLearner = try container.value(.isLearner, default: false)
    }
}

struct EtcdMemberList: Decodable {
    var members: [EtcdMember]

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        members = try container.value(.members, default: [])
    }

    enum CodingKeys: String, CodingKey { case members }
}

/// `maintenance/status` as sent; the endpoint is added by the client.
struct EtcdStatusResponse: Decodable {
    var header: EtcdHeader
    var version: String
    var dbSize: Int64
    var leader: UInt64
    var raftIndex: UInt64
    var raftTerm: UInt64
    var errors: [String]

    enum CodingKeys: String, CodingKey {
        case header, version, dbSize, leader, raftIndex, raftTerm, errors
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        header = try container.value(.header, default: EtcdHeader())
        version = try container.value(.version, default: "")
        dbSize = try container.int64(.dbSize)
        leader = try container.uint64(.leader)
        raftIndex = try container.uint64(.raftIndex)
        raftTerm = try container.uint64(.raftTerm)
        errors = try container.value(.errors, default: [])
    }
}

// MARK: - encoding

/// A request body: a JSON object built from the fields given (int64s as strings, bytes as
/// base64), so nothing is sent that the caller did not set.
struct EtcdBody: Encodable, Sendable {
    var fields: [String: EtcdJSON]

    init(_ fields: [String: EtcdJSON]) { self.fields = fields }

    func encode(to encoder: any Encoder) throws {
        try EtcdJSON.object(fields).encode(to: encoder)
    }
}

/// A JSON value of a request.
indirect enum EtcdJSON: Encodable, Sendable {
    case string(String)
    case bytes(Data)
    case int(Int64)
    case bool(Bool)
    case array([EtcdJSON])
    case object([String: EtcdJSON])

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let text): try container.encode(text)
        case .bytes(let data): try container.encode(data.base64EncodedString())
        case .int(let number): try container.encode(String(number))
        case .bool(let flag): try container.encode(flag)
        case .array(let items): try container.encode(items)
        case .object(let fields): try container.encode(fields)
        }
    }
}

extension EtcdKeys {
    /// `key` and, for a prefix, `range_end`.
    var fields: [String: EtcdJSON] {
        let (key, rangeEnd) = wire
        var fields: [String: EtcdJSON] = ["key": .bytes(key)]
        if let rangeEnd { fields["range_end"] = .bytes(rangeEnd) }
        return fields
    }
}

extension EtcdCompare {
    var json: EtcdJSON {
        var fields: [String: EtcdJSON] = ["key": .bytes(Data(key.utf8)), "result": .string(result.rawValue)]
        switch target {
        case .version(let version):
            fields["target"] = .string("VERSION")
            fields["version"] = .int(version)
        case .createRevision(let revision):
            fields["target"] = .string("CREATE")
            fields["create_revision"] = .int(revision)
        case .modRevision(let revision):
            fields["target"] = .string("MOD")
            fields["mod_revision"] = .int(revision)
        case .value(let value):
            fields["target"] = .string("VALUE")
            fields["value"] = .bytes(value)
        case .lease(let lease):
            fields["target"] = .string("LEASE")
            fields["lease"] = .int(lease)
        }
        return .object(fields)
    }
}

extension EtcdOperation {
    var json: EtcdJSON {
        switch self {
        case .put(let key, let value, let lease):
            var fields: [String: EtcdJSON] = ["key": .bytes(Data(key.utf8)), "value": .bytes(value)]
            if lease != 0 { fields["lease"] = .int(lease) }
            return .object(["request_put": .object(fields)])
        case .range(let keys):
            return .object(["request_range": .object(keys.fields)])
        case .delete(let keys):
            return .object(["request_delete_range": .object(keys.fields)])
        }
    }
}
