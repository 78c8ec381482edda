// libFuzzer target: session claims (Sources/Runner/Claims): the compact JWS split, strict
// base64url, the header checks, jwt-kit signature verification, the payload decoding and the
// registered-claim checks. The first input byte picks the mode:
//   even: the rest is a token, verified as it arrives on the wire (a forged signature never
//         verifies, so this explores the parsing up to the signature);
//   odd:  the rest is `header JSON \n payload JSON`, signed here with the test HS256 key (bit 1
//         clear) or the test EdDSA key (bit 1 set), then verified: the checks after the signature.
// A verified claim must satisfy every rule the verifier promises; verification must be repeatable.
import Crypto
import Foundation

/// Test keys only: fixed material so the seed corpus's signed tokens stay valid.
enum FuzzKeys {
    static let secret = Array("leasehold-fuzz-test-secret-0123456789".utf8)
    static let seed = [UInt8](repeating: 7, count: 32)
    static let signing = try! Curve25519.Signing.PrivateKey(rawRepresentation: seed)
    static let now = Date(timeIntervalSince1970: 1_800_000_000)
    static let policy = ClaimPolicy()

    static let verifier: ClaimVerifier = {
        let keySet = KeySet(keys: [
            // Bound to acme: it may only sign acme's claims.
            ClaimKey(kid: "acme-hs", alg: .hs256, secret: Base64URL.encode(secret), tenantID: "acme"),
            ClaimKey(
                kid: "ed1", alg: .eddsa, publicKey: Base64URL.encode(signing.publicKey.rawRepresentation)),
        ])
        // nonisolated(unsafe): written once by the task below before it signals `done`, read only
        // after `done.wait()`; the semaphore orders the write before the read.
        nonisolated(unsafe) var made: ClaimVerifier?
        let done = DispatchSemaphore(value: 0)
        Task {
            made = try! await ClaimVerifier(keySet: keySet, policy: policy, now: { FuzzKeys.now })
            done.signal()
        }
        done.wait()
        return made!
    }()
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzClaims(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let mode = data[0]
    let rest = UnsafeBufferPointer(start: data + 1, count: size - 1)
    let token: String
    if mode & 1 == 0 {
        token = String(decoding: rest, as: UTF8.self)
    } else {
        let parts = rest.split(separator: UInt8(ascii: "\n"), maxSplits: 1, omittingEmptySubsequences: false)
        let header = Base64URL.encode(parts[0])
        let payload = parts.count > 1 ? Base64URL.encode(parts[1]) : ""
        let input = Array("\(header).\(payload)".utf8)
        let signature: [UInt8]
        if mode & 2 == 0 {
            signature = Array(HMAC<SHA256>.authenticationCode(for: input, using: SymmetricKey(data: FuzzKeys.secret)))
        } else {
            signature = Array(try! FuzzKeys.signing.signature(for: input))
        }
        token = "\(header).\(payload).\(Base64URL.encode(signature))"
    }
    let verifier = FuzzKeys.verifier
    let signatureResult = Result { () throws(Refusal) in try verifier.verifySignature(token) }
    let result = Result { () throws(Refusal) in try verifier.verify(token) }
    guard (try? verifier.verify(token)) == (try? result.get()) else { fatalError("verification is not repeatable") }
    guard case .success(let verified) = result else { return 0 }
    guard case .success = signatureResult else { fatalError("a claim verified whose signature did not") }
    let claim = verified.claim
    let policy = FuzzKeys.policy
    guard claim.iss == policy.issuer, claim.aud.contains(policy.audience) else { fatalError("iss/aud not checked") }
    guard claim.exp > claim.iat, claim.exp - claim.iat <= policy.maximumLifetime.components.seconds else {
        fatalError("lifetime not checked")
    }
    let now = Int64(FuzzKeys.now.timeIntervalSince1970)
    guard claim.exp > now - 30, claim.nbf <= now + 30, claim.iat <= now + 30 else { fatalError("time not checked") }
    guard !claim.jti.isEmpty, claim.jti.utf8.count <= 128 else { fatalError("jti not checked") }
    if verified.keyID == "acme-hs" {
        guard claim.tenantID == "acme" else { fatalError("a tenant-bound key signed another tenant's claim") }
    }
    return 0
}

// SwiftPM links an executable's entry point as `<module>_main`; hand it to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("claims_main")
func claimsMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, fuzzClaims)
}
