import Foundation
import Synchronization

/// How refusals of unauthenticated requests are aggregated into the audit trail (`leasehold.yaml`
/// `audit_unauthenticated_interval_seconds`, `audit_unauthenticated_sources`).
public struct RefusalSampling: Sendable, Equatable {
    /// Default length of one interval.
    public static let defaultInterval = Duration.seconds(10)
    /// Default number of distinct sources tallied per interval.
    public static let defaultMaximumSources = 256
    /// One interval: a source's first refusal in it is written at once, the rest at its end as one record.
    public var interval: Duration
    /// Sources tallied one by one per interval; refusals from further sources share one tally.
    public var maximumSources: Int

    /// Creates a setting; the defaults are the configuration's.
    public init(interval: Duration = defaultInterval, maximumSources: Int = defaultMaximumSources) {
        self.interval = interval
        self.maximumSources = maximumSources
    }
}

/// Counts refusals of requests that presented no verified claim (missing, malformed, wrongly
/// signed, expired, unknown key...), per source and interval, so that a flood of them is not a
/// flood of durable audit rows (issue 14, finding 5: 2.4 KB and an fsync each, 450+/s from one
/// client, filling the disk that the audit log needs).
///
/// Per interval, a source's first refusal is written as its own `request.refused` record
/// (``Decision/record``); every later one is only counted (``Decision/count``), and
/// ``drain(at:)`` at the interval's end returns one ``Aggregate`` per source that had any, written
/// as one `request.refused.sampled` record. The map is bounded: once ``maximumSources`` sources
/// are tallied, refusals from any further source are counted together under ``overflowSource``
/// (none of them written one by one). Refusals of authenticated requests (the claim verified;
/// the session, lease or binding refused it) never come here: each stays one record.
///
/// A value type: the caller owns the lock and the interval's timer (``UnauthenticatedRefusals``,
/// `RefusalSampleFlusher`).
public struct RefusalSampler: Sendable {
    /// What to do with one refusal.
    public enum Decision: Sendable, Equatable {
        /// The source's first in this interval: write it as its own record.
        case record
        /// Counted into the source's aggregate record at the interval's end.
        case count
    }

    /// The refusals from one source that were counted rather than written.
    public struct Tally: Sendable, Equatable {
        /// How many.
        public var count = 0
        /// How many of each refusal code.
        public var codes: [String: Int] = [:]
        /// When the first of them came.
        public var first: Date?
        /// When the last of them came.
        public var last: Date?

        mutating func add(code: String, at time: Date) {
            count += 1
            codes[code, default: 0] += 1
            first = first ?? time
            last = time
        }
    }

    /// One source's record for the interval that ended.
    public struct Aggregate: Sendable, Equatable {
        /// The client address (IPv6: its /64), `stdio`, or ``RefusalSampler/overflowSource``.
        public var source: String
        /// What was counted.
        public var tally: Tally
    }

    /// The source of refusals from sources beyond ``maximumSources`` in one interval.
    public static let overflowSource = "*"

    /// Sources tallied one by one per interval.
    public let maximumSources: Int
    /// Sources seen this interval, with what was counted (a count of 0: only the first came).
    private(set) var sources: [String: Tally] = [:]
    /// Refusals from sources beyond the cap.
    private(set) var overflow = Tally()

    /// Creates an empty sampler.
    public init(maximumSources: Int = RefusalSampling.defaultMaximumSources) {
        self.maximumSources = max(1, maximumSources)
    }

    /// Takes note of one refusal from `source`.
    public mutating func refused(source: String, code: String, at time: Date) -> Decision {
        if sources[source] != nil {
            sources[source]!.add(code: code, at: time)
            return .count
        }
        guard sources.count < maximumSources else {
            overflow.add(code: code, at: time)
            return .count
        }
        sources[source] = Tally()
        return .record
    }

    /// Ends the interval: the aggregates to write (sources by name, the overflow last), and a fresh
    /// interval in which every source's next refusal is written again.
    public mutating func drain() -> [Aggregate] {
        var aggregates = sources.filter { $0.value.count > 0 }.sorted { $0.key < $1.key }.map {
            Aggregate(source: $0.key, tally: $0.value)
        }
        if overflow.count > 0 { aggregates.append(Aggregate(source: Self.overflowSource, tally: overflow)) }
        sources = [:]
        overflow = Tally()
        return aggregates
    }

    /// Whether nothing is waiting to be drained.
    public var isEmpty: Bool { sources.isEmpty && overflow.count == 0 }
}

/// The runner's one ``RefusalSampler``, behind a lock: every transport's refusals go through it,
/// and `RefusalSampleFlusher` drains it at the end of each interval and at shutdown.
public final class UnauthenticatedRefusals: Sendable {
    /// The setting in force.
    public let sampling: RefusalSampling
    private let sampler: Mutex<RefusalSampler>

    /// Creates an empty one.
    public init(_ sampling: RefusalSampling = RefusalSampling()) {
        self.sampling = sampling
        self.sampler = Mutex(RefusalSampler(maximumSources: sampling.maximumSources))
    }

    /// See ``RefusalSampler/refused(source:code:at:)``.
    public func refused(source: String, code: String, at time: Date) -> RefusalSampler.Decision {
        sampler.withLock { $0.refused(source: source, code: code, at: time) }
    }

    /// See ``RefusalSampler/drain()``.
    public func drain() -> [RefusalSampler.Aggregate] {
        sampler.withLock { $0.drain() }
    }

    /// The `request.refused.sampled` record of one aggregate: its `detail` is a JSON object with
    /// `source`, `count`, `codes` (code -> count), `first`, `last` and `interval_seconds`.
    public func event(for aggregate: RefusalSampler.Aggregate) -> AuditEvent {
        struct Detail: Encodable {
            let source: String
            let count: Int
            let codes: [String: Int]
            let first: String?
            let last: String?
            let intervalSeconds: Int64

            enum CodingKeys: String, CodingKey {
                case source, count, codes, first, last
                case intervalSeconds = "interval_seconds"
            }
        }
        let format = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        let detail = Detail(
            source: aggregate.source, count: aggregate.tally.count, codes: aggregate.tally.codes,
            first: aggregate.tally.first.map { $0.formatted(format) },
            last: aggregate.tally.last.map { $0.formatted(format) },
            intervalSeconds: sampling.interval.components.seconds)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var event = AuditEvent("request.refused.sampled")
        event.decision = "refused"
        event.detail = (try? encoder.encode(detail)).map { String(decoding: $0, as: UTF8.self) }
        return event
    }
}
