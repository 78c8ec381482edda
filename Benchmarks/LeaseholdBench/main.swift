// leasehold-bench: the in-process server-side figures (claim verification, tools/list).
// Benchmarks/run.sh drives it (and the PyJWT peer) and renders BENCHMARKS.md.
import Foundation
import Runner

let usage = """
    usage: leasehold-bench [options]
      --samples N          timed claim verifications per algorithm (default 2000)
      --warmup N           untimed claim verifications first (default 200)
      --tokens N           distinct tokens per algorithm, cycled (default 64)
      --list-samples N     timed tools/list iterations per catalog size (default 500)
      --list-warmup N      untimed tools/list iterations first (default 50)
      --sizes A,B          catalog sizes for tools/list (default 500,10000)
      --policies DIR       the policies directory (default ./policies)
      --json FILE          write machine-readable results
      --export-tokens FILE write the claim tokens and verification keys for pyjwt_bench.py
      --audit-records N    audit records per concurrency level (default 4000)
      --audit-dir DIR      where the audit benchmark writes its logs (default: the system temp dir)
      --only claims|list|audit
                           run one figure
      --profile resolve|encode
                           tools/list only, the largest size, one stage (for callgrind)
    """

struct Options {
    var samples = 2000
    var warmup = 200
    var tokens = 64
    var listSamples = 500
    var listWarmup = 50
    var sizes = [500, 10_000]
    var policies = "policies"
    var json: String?
    var exportTokens: String?
    var only: String?
    var profile: ToolsListBench.Only?
    var auditRecords = 4000
    var auditDirectory = NSTemporaryDirectory()
}

func parse(_ arguments: [String]) throws -> Options {
    var options = Options()
    var iterator = arguments.makeIterator()
    func value(_ flag: String) throws -> String {
        guard let next = iterator.next() else { throw BenchError("\(flag) needs a value\n\(usage)") }
        return next
    }
    func count(_ flag: String, minimum: Int = 1) throws -> Int {
        let text = try value(flag)
        guard let number = Int(text), number >= minimum else { throw BenchError("\(flag): \(text) is not a count") }
        return number
    }
    while let argument = iterator.next() {
        switch argument {
        case "--samples": options.samples = try count(argument)
        case "--warmup": options.warmup = try count(argument, minimum: 0)
        case "--tokens": options.tokens = try count(argument)
        case "--list-samples": options.listSamples = try count(argument)
        case "--list-warmup": options.listWarmup = try count(argument, minimum: 0)
        case "--sizes":
            let text = try value(argument)
            let sizes = text.split(separator: ",").compactMap { Int($0) }
            guard !sizes.isEmpty, sizes.count == text.split(separator: ",").count,
                sizes.allSatisfy({ $0 > BuiltinTools.workspace.count && $0 <= Fixture.maximumTools })
            else {
                throw BenchError("--sizes: \(text) must be comma-separated counts in 8...\(Fixture.maximumTools)")
            }
            options.sizes = sizes
        case "--policies": options.policies = try value(argument)
        case "--json": options.json = try value(argument)
        case "--export-tokens": options.exportTokens = try value(argument)
        case "--audit-records": options.auditRecords = try count(argument)
        case "--audit-dir": options.auditDirectory = try value(argument)
        case "--only":
            let text = try value(argument)
            guard ["claims", "list", "audit"].contains(text) else { throw BenchError("--only: claims, list or audit") }
            options.only = text
        case "--profile":
            let text = try value(argument)
            guard let stage = ToolsListBench.Only(rawValue: text), stage != .all else {
                throw BenchError("--profile: resolve or encode")
            }
            options.profile = stage
        case "-h", "--help":
            print(usage)
            exit(0)
        default:
            throw BenchError("unknown argument \(argument)\n\(usage)")
        }
    }
    return options
}

struct Report: Encodable {
    let build: String
    let claims: [ClaimsResult]
    let toolsList: [ToolsListResult]
    let audit: [AuditResult]

    enum CodingKeys: String, CodingKey {
        case build, claims, audit
        case toolsList = "tools_list"
    }
}

#if DEBUG
    let buildConfiguration = "debug"
#else
    let buildConfiguration = "release"
#endif

func writeJSON(_ value: some Encodable, to path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    try encoder.encode(value).write(to: URL(fileURLWithPath: path))
}

/// Runs async work from the synchronous entry point. The entry point stays synchronous (no
/// top-level `await`) so `--profile` never starts the concurrency runtime: valgrind 3.19 crashes
/// on Swift's async main.
func blocking<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) throws -> T {
    let semaphore = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var outcome: Result<T, any Error>?
    Task {
        do { outcome = .success(try await work()) } catch { outcome = .failure(error) }
        semaphore.signal()
    }
    semaphore.wait()
    return try outcome!.get()
}

func main() throws {
    let options = try parse(Array(CommandLine.arguments.dropFirst()))
    if buildConfiguration == "debug" { note("leasehold-bench: debug build; figures are not representative") }

    if let stage = options.profile {
        let size = options.sizes.max()!
        _ = try ToolsListBench.run(
            tools: size, samples: options.listSamples, warmup: options.listWarmup, policies: options.policies,
            only: stage)
        return
    }

    var claims: [ClaimsResult] = []
    if options.only == nil || options.only == "claims" {
        let (results, export) = try blocking {
            try await ClaimsBench.run(samples: options.samples, warmup: options.warmup, distinct: options.tokens)
        }
        claims = results
        if let path = options.exportTokens { try writeJSON(export, to: path) }
    } else if options.exportTokens != nil {
        throw BenchError("--export-tokens needs the claims figure")
    }

    var lists: [ToolsListResult] = []
    if options.only == nil || options.only == "list" {
        for size in options.sizes {
            lists.append(
                try ToolsListBench.run(
                    tools: size, samples: options.listSamples, warmup: options.listWarmup, policies: options.policies))
        }
    }

    var audit: [AuditResult] = []
    if options.only == nil || options.only == "audit" {
        for concurrency in [1, 16, 64] {
            let records = options.auditRecords
            let directory = options.auditDirectory
            audit.append(
                try blocking {
                    try await AuditBench.run(records: records, concurrency: concurrency, directory: directory)
                })
        }
    }

    let report = Report(build: buildConfiguration, claims: claims, toolsList: lists, audit: audit)
    if let path = options.json { try writeJSON(report, to: path) }
}

do {
    try main()
} catch {
    note("leasehold-bench: \(error)")
    exit(1)
}
