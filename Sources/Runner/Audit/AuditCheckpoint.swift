import Crypto
import Foundation

/// A signed statement that the audit chain's record `seq` had hash `headHash` at `time`.
///
/// The chain alone only shows that records agree with each other: whoever can write the file can
/// delete a record and recompute every later hash. A checkpoint signed with a key the writer does
/// not hold pins the head, so such a rewrite of covered records no longer verifies.
public struct AuditCheckpoint: Sendable, Hashable {
    /// The last record the checkpoint covers (records are numbered from 1, so also their count).
    public let seq: Int64
    /// That record's chain hash.
    public let headHash: String
    /// When the checkpoint was signed, in the audit log's time format.
    public let time: String
    /// Which key signed it (``AuditPublicKey/keyID``).
    public let keyID: String
    /// Ed25519 signature over ``message``, hex.
    public let signature: String

    /// The exact bytes signed: a fixed domain label (so the signature cannot be replayed as any
    /// other Leasehold signature) and the three fields, one per line.
    public static func message(seq: Int64, headHash: String, time: String) -> Data {
        Data("leasehold-audit-checkpoint-v1\n\(seq)\n\(headHash)\n\(time)".utf8)
    }

    /// Signs the head `(seq, headHash)` at `time`.
    public static func sign(seq: Int64, headHash: String, time: String, with key: AuditSigningKey) throws
        -> AuditCheckpoint
    {
        let signature = try key.privateKey.signature(for: message(seq: seq, headHash: headHash, time: time))
        return AuditCheckpoint(
            seq: seq, headHash: headHash, time: time, keyID: key.publicKey.keyID, signature: Hex.encode(signature))
    }

    /// True when the signature is `publicKey`'s over this checkpoint's fields.
    public func isSigned(by publicKey: AuditPublicKey) -> Bool {
        guard keyID == publicKey.keyID, let bytes = Hex.decode(signature) else { return false }
        return publicKey.key.isValidSignature(bytes, for: Self.message(seq: seq, headHash: headHash, time: time))
    }
}

/// The audit signing key: `<state dir>/audit-signing.key` (0600, base64 of the raw Ed25519 seed).
///
/// It lives in the state directory, which is never mounted into a worker, so nothing a tool runs
/// can read it. Its public half is written beside it as `audit-signing.pub` so a verifier (or an
/// auditor's machine) can be handed only that.
public struct AuditSigningKey: Sendable {
    /// The private key.
    public let privateKey: Curve25519.Signing.PrivateKey
    /// Its public half, with its id.
    public var publicKey: AuditPublicKey { AuditPublicKey(privateKey.publicKey) }

    /// Wraps an existing key (tests).
    public init(_ privateKey: Curve25519.Signing.PrivateKey = .init()) { self.privateKey = privateKey }

    /// The private key file's name in the state directory.
    public static let fileName = "audit-signing.key"
    /// The public key file's name in the state directory.
    public static let publicFileName = "audit-signing.pub"

    /// Reads `<stateDir>/audit-signing.key`, generating it on first start, and (re)writes the
    /// public key file beside it when it is missing or does not match.
    public static func loadOrCreate(stateDir: String) throws -> AuditSigningKey {
        let path = stateDir + "/" + fileName
        let key: AuditSigningKey
        if FileManager.default.fileExists(atPath: path) {
            let text = try SecretFile.read(path)
            guard let raw = Data(base64Encoded: text),
                let privateKey = try? Curve25519.Signing.PrivateKey(rawRepresentation: raw)
            else { throw ConfigError("\(path) does not hold a base64 Ed25519 private key") }
            key = AuditSigningKey(privateKey)
        } else {
            key = AuditSigningKey()
            try SecretFile.write(Data(key.privateKey.rawRepresentation.base64EncodedString().utf8), to: path)
        }
        let publicPath = stateDir + "/" + publicFileName
        let publicText = key.publicKey.fileText
        if (try? String(contentsOfFile: publicPath, encoding: .utf8)) != publicText {
            try Data(publicText.utf8).write(to: URL(fileURLWithPath: publicPath), options: .atomic)
        }
        return key
    }
}

/// An audit public key, as given to `leasehold audit verify`.
public struct AuditPublicKey: Sendable {
    /// The Ed25519 public key.
    public let key: Curve25519.Signing.PublicKey
    /// First 16 hex digits of the SHA-256 of the raw key: names the key in every checkpoint, so a
    /// checkpoint signed by another key is reported as such rather than as a bad signature.
    public let keyID: String

    /// Wraps a key.
    public init(_ key: Curve25519.Signing.PublicKey) {
        self.key = key
        keyID = String(Digest.sha256Hex(key.rawRepresentation).prefix(16))
    }

    /// The public key file's contents: base64 of the raw 32 bytes and a newline.
    public var fileText: String { key.rawRepresentation.base64EncodedString() + "\n" }

    /// Reads a public key file written by ``AuditSigningKey/loadOrCreate(stateDir:)``.
    public static func load(file: String) throws -> AuditPublicKey {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ConfigError("cannot read the audit public key \(file)")
        }
        guard let raw = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)),
            let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw)
        else { throw ConfigError("\(file) does not hold a base64 Ed25519 public key") }
        return AuditPublicKey(key)
    }
}

/// What `leasehold audit verify` learns from the checkpoints, beside the chain itself.
public struct CheckpointReport: Sendable, Equatable {
    /// How many checkpoints the log holds.
    public var checkpoints = 0
    /// The highest record covered by a checkpoint that verified (0 when none did).
    public var lastCoveredSeq: Int64 = 0
    /// The highest record in the log.
    public var records: Int64 = 0
    /// One sentence per checkpoint that failed: a bad signature, another key, or a covered record
    /// that no longer has the signed hash.
    public var failures: [String] = []

    /// A report on a log of `records` records and no checkpoint yet looked at.
    public init(records: Int64 = 0) { self.records = records }

    /// Records after the last good checkpoint: written, chained, but not yet signed.
    public var unsignedRecords: Int64 { max(0, records - lastCoveredSeq) }
}

/// Lowercase hex for signatures.
enum Hex {
    static func encode(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }

    static func decode(_ text: String) -> Data? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes = Data(capacity: digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = value(digits[index]), let low = value(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func value(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        default: nil
        }
    }
}
