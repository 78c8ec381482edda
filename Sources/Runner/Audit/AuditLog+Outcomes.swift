import Foundation
import GRDB

/// What became of a call, as the audit log tells it from the call's `call.intent` record.
public enum CallOutcomeStatus: Sendable, Hashable {
    /// Its `call.outcome` record is `outcomeSeq`.
    case recorded(outcomeSeq: Int64)
    /// No outcome record yet, and a runner serving the log now started before the intent: the call
    /// may still be running, and its outcome is written when it ends.
    case inFlight
    /// No outcome record, and none will come: the runner that ran the call stopped (crash, `kill -9`,
    /// power loss) before the outcome was committed, or the outcome could not be written. Whether
    /// the tool finished, and what it changed, is unknown.
    case unknown

    /// `recorded`, `in_flight` or `unknown`: the audit API's `outcome_status`.
    public var name: String {
        switch self {
        case .recorded: "recorded"
        case .inFlight: "in_flight"
        case .unknown: "unknown"
        }
    }
}

/// The calls of a whole log that have no outcome record, as `leasehold audit verify` reports them.
public struct OutcomeReport: Sendable, Equatable {
    /// `call.intent` records in the log.
    public var intents = 0
    /// Intents whose outcome is unknown (see ``CallOutcomeStatus/unknown``), oldest first.
    public var unknown: [AuditRecord] = []
    /// Intents that a live runner may still be running (see ``CallOutcomeStatus/inFlight``).
    public var inFlight: [AuditRecord] = []
    /// The record from which a live runner serves the log; nil when no runner is live.
    public var liveRunnerFrom: Int64?
    /// Outcome records whose `intent_seq` does not name their own call's intent: a record was
    /// deleted or moved and the chain recomputed, or the link was forged. One sentence each.
    public var badLinks: [String] = []

    /// An empty report.
    public init() {}
}

extension AuditLog {
    /// Pairs every `call.intent` of the log with its `call.outcome`, reading the hashed bodies only
    /// (never the index columns, which are not covered by the chain). An outcome pairs with the
    /// intent its `intent_seq` names; an outcome written before that link existed pairs with the
    /// latest open intent of the same session, claim, request id, tool and node (a connection has
    /// one call per request id in flight, and each connection binds its own claim).
    ///
    /// An unpaired intent is in flight when a live runner started before it (and this process did
    /// not lose its outcome), and unknown otherwise: `verify` on a stopped runner's log reports
    /// every unpaired intent as unknown.
    public nonisolated func callOutcomes() throws -> OutcomeReport {
        let lost = lostOutcomes.withLock { $0 }
        if let postgres {
            // Per node: each node's calls are judged by that node's presence (see
            // ``postgresInFlight(_:_:live:lost:)``).
            let live = try postgres.liveRunners()
            var report = OutcomeReport()
            report.liveRunnerFrom = live.values.min()
            var matcher = OutcomeMatcher()
            try postgres.forEachRecord { record in
                Self.feed(record, to: &matcher, counting: &report)
                return true
            }
            return try finish(
                &report, matcher, body: postgres.body(at:),
                inFlight: { seq, fields in self.postgresInFlight(seq, fields, live: live, lost: lost) })
        }
        let live = AuditRunnerPresence.liveFrom(logPath: path)
        let boundary = min(openedAtSeq, live ?? .max)
        return try pool.read { db in
            var report = OutcomeReport()
            report.liveRunnerFrom = live
            var matcher = OutcomeMatcher()
            let rows = try Row.fetchCursor(db, sql: "SELECT seq, body, prev_hash, hash FROM audit ORDER BY seq")
            while let row = try rows.next() {
                Self.feed(Self.record(row), to: &matcher, counting: &report)
            }
            return try finish(
                &report, matcher,
                body: { seq in try String.fetchOne(db, sql: "SELECT body FROM audit WHERE seq = ?", arguments: [seq]) },
                inFlight: { seq, _ in seq > boundary && !lost.contains(seq) })
        }
    }

    private static func feed(
        _ record: AuditRecord, to matcher: inout OutcomeMatcher, counting report: inout OutcomeReport
    ) {
        guard let fields = CallFields.parse(record.body) else { return }
        if fields.event == CallFields.intent { report.intents += 1 }
        _ = matcher.add(record, fields)
    }

    /// Fills `report` from a matcher fed every record: bad links, then the open intents.
    private nonisolated func finish(
        _ report: inout OutcomeReport, _ matcher: OutcomeMatcher, body: (Int64) throws -> String?,
        inFlight: (Int64, CallFields) -> Bool
    ) throws -> OutcomeReport {
        for orphan in matcher.orphans {
            report.badLinks.append(try Self.describeBadLink(outcome: orphan.outcome, fields: orphan.fields, body: body))
        }
        for (seq, open) in matcher.open.sorted(by: { $0.key < $1.key }) {
            if inFlight(seq, open.fields) {
                report.inFlight.append(open.record)
            } else {
                report.unknown.append(open.record)
            }
        }
        return report
    }

    /// Whether an intent without an outcome record may still be running, on a trail several nodes
    /// share: not when this log lost its outcome; yes when this node wrote it after this log
    /// opened (as on SQLite); otherwise when a live runner of the node that wrote it (the
    /// intent's `node`) started before it. Another live node's call is in flight, not unknown,
    /// though this node did not write it; a gone node's is unknown.
    nonisolated func postgresInFlight(_ seq: Int64, _ fields: CallFields, live: [String: Int64], lost: Set<Int64>)
        -> Bool
    {
        guard !lost.contains(seq) else { return false }
        if fields.node == node && seq > openedAtSeq { return true }
        guard let writer = fields.node, let from = live[writer] else { return false }
        return seq > from
    }

    /// The status of each `call.intent` among `records` (other records are left out), for the
    /// audit API: outcomes linked by `intent_seq` are found by index, older unlinked ones by the
    /// same pairing as ``callOutcomes()`` over the intent's session from the intent on.
    public nonisolated func outcomeStatuses(of records: [AuditRecord]) throws -> [Int64: CallOutcomeStatus] {
        var intents: [Int64: (record: AuditRecord, fields: CallFields)] = [:]
        for record in records {
            if let fields = CallFields.parse(record.body), fields.event == CallFields.intent {
                intents[record.seq] = (record, fields)
            }
        }
        guard !intents.isEmpty else { return [:] }
        let lost = lostOutcomes.withLock { $0 }
        if let postgres {
            let live = try postgres.liveRunners()
            return try Self.statuses(
                of: intents, linked: postgres.linkedOutcomes,
                sessionRecords: { session, from, body in
                    try postgres.forEachRecord(session: session, fromSeq: from, body)
                },
                inFlight: { seq, fields in self.postgresInFlight(seq, fields, live: live, lost: lost) })
        }
        let boundary = inFlightBoundary()
        return try pool.read { db in
            try Self.statuses(
                of: intents,
                linked: { chunk in
                    let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
                    return try Row.fetchAll(
                        db, sql: "SELECT seq, intent_seq, body FROM audit WHERE intent_seq IN (\(marks)) ORDER BY seq",
                        arguments: StatementArguments(chunk)
                    ).map { row -> (Int64, Int64, String) in (row["seq"], row["intent_seq"], row["body"]) }
                },
                sessionRecords: { session, from, body in
                    let rows = try Row.fetchCursor(
                        db,
                        sql: "SELECT seq, body, prev_hash, hash FROM audit WHERE session = ? AND seq >= ? ORDER BY seq",
                        arguments: [session, from])
                    while let row = try rows.next() {
                        guard try body(Self.record(row)) else { return }
                    }
                },
                inFlight: { seq, _ in seq > boundary && !lost.contains(seq) })
        }
    }

    /// ``outcomeStatuses(of:)`` over either storage: `linked` reads the outcomes whose index
    /// column names one of some intents (seq, intent_seq, body); `sessionRecords` feeds a
    /// session's records from a seq on until its body returns false.
    private static func statuses(
        of intents: [Int64: (record: AuditRecord, fields: CallFields)],
        linked: ([Int64]) throws -> [(Int64, Int64, String)],
        sessionRecords: (String, Int64, (AuditRecord) throws -> Bool) throws -> Void,
        inFlight: (Int64, CallFields) -> Bool
    ) throws -> [Int64: CallOutcomeStatus] {
        var statuses: [Int64: CallOutcomeStatus] = [:]
        let seqs = intents.keys.sorted()
        for start in stride(from: 0, to: seqs.count, by: 500) {
            for (seq, target, body) in try linked(Array(seqs[start..<min(start + 500, seqs.count)])) {
                // The column is an index; the hashed body is what counts.
                guard statuses[target] == nil, seq > target, let intent = intents[target]?.fields,
                    let fields = CallFields.parse(body), fields.event == CallFields.outcome,
                    fields.intentSeq == target, fields.session == intent.session, fields.tool == intent.tool
                else { continue }
                statuses[target] = .recorded(outcomeSeq: seq)
            }
        }
        for seq in seqs where statuses[seq] == nil {
            guard let intent = intents[seq] else { continue }
            if let outcome = try unlinkedOutcome(of: intent.record, intent.fields, sessionRecords: sessionRecords) {
                statuses[seq] = .recorded(outcomeSeq: outcome)
            } else {
                statuses[seq] = inFlight(seq, intent.fields) ? .inFlight : .unknown
            }
        }
        return statuses
    }

    /// The outcome paired with `intent` by a pass over its session's records from it on.
    private static func unlinkedOutcome(
        of intent: AuditRecord, _ fields: CallFields,
        sessionRecords: (String, Int64, (AuditRecord) throws -> Bool) throws -> Void
    ) throws -> Int64? {
        guard let session = fields.session else { return nil }
        var matcher = OutcomeMatcher()
        var found: Int64?
        try sessionRecords(session, intent.seq) { record in
            guard let fields = CallFields.parse(record.body) else { return true }
            if let paired = matcher.add(record, fields), paired.intent == intent.seq {
                found = paired.outcome
                return false
            }
            return true
        }
        return found
    }

    private static func describeBadLink(outcome: Int64, fields: CallFields, body: (Int64) throws -> String?) throws
        -> String
    {
        let named = fields.intentSeq ?? 0
        let prefix = "outcome record \(outcome) names intent record \(named)"
        guard named < outcome else { return prefix + ", which comes after it" }
        guard let body = try body(named) else { return prefix + ", which is not in the log" }
        guard let target = CallFields.parse(body), target.event == CallFields.intent else {
            return prefix + ", which is not a call.intent (records were deleted or moved, or the link was forged)"
        }
        guard target.session == fields.session, target.tool == fields.tool else {
            return prefix + ", the intent of another call (records were deleted or moved, or the link was forged)"
        }
        return prefix + ", which already has an outcome record"
    }
}

/// The fields of a `call.intent` or `call.outcome` body that pair the two.
struct CallFields: Decodable {
    static let intent = "call.intent"
    static let outcome = "call.outcome"

    let event: String
    let session: String?
    let claimFingerprint: String?
    let requestID: String?
    let tool: String?
    let node: String?
    let intentSeq: Int64?

    enum CodingKeys: String, CodingKey {
        case event, session, tool, node
        case claimFingerprint = "claim_fingerprint"
        case requestID = "request_id"
        case intentSeq = "intent_seq"
    }

    /// What pairs an unlinked outcome with its intent.
    struct Key: Hashable {
        let session: String?
        let claimFingerprint: String?
        let requestID: String?
        let tool: String?
        let node: String?
    }

    var key: Key {
        Key(session: session, claimFingerprint: claimFingerprint, requestID: requestID, tool: tool, node: node)
    }

    private static let decoder = JSONDecoder()

    /// The fields of `body` when it is a call intent or outcome; nil for every other record. The
    /// encoder writes `event` first, so most records are passed over without being parsed.
    static func parse(_ body: String) -> CallFields? {
        if body.hasPrefix("{\"event\":\"") && !body.hasPrefix("{\"event\":\"call.") { return nil }
        guard let fields = try? decoder.decode(CallFields.self, from: Data(body.utf8)),
            fields.event == intent || fields.event == outcome
        else { return nil }
        return fields
    }
}

/// Pairs outcomes with intents over records fed in chain order.
struct OutcomeMatcher {
    struct Open {
        let record: AuditRecord
        let fields: CallFields
    }

    /// Intents with no outcome so far, by sequence number.
    private(set) var open: [Int64: Open] = [:]
    /// Open intents by pairing key, oldest first (for outcomes without a link).
    private var unlinked: [CallFields.Key: [Int64]] = [:]
    /// Outcomes whose link names no open intent of their call.
    private(set) var orphans: [(outcome: Int64, fields: CallFields)] = []

    /// Feeds one call record; returns the pair it completes, if any.
    mutating func add(_ record: AuditRecord, _ fields: CallFields) -> (intent: Int64, outcome: Int64)? {
        if fields.event == CallFields.intent {
            open[record.seq] = Open(record: record, fields: fields)
            unlinked[fields.key, default: []].append(record.seq)
            return nil
        }
        if let named = fields.intentSeq {
            guard let intent = open[named], intent.fields.session == fields.session, intent.fields.tool == fields.tool
            else {
                orphans.append((record.seq, fields))
                return nil
            }
            close(named, key: intent.fields.key)
            return (named, record.seq)
        }
        // Written before outcomes carried their link: the latest open intent of the same call key
        // (one call per request id is in flight on a connection, so that is its own).
        guard let named = unlinked[fields.key]?.last else { return nil }
        close(named, key: fields.key)
        return (named, record.seq)
    }

    private mutating func close(_ seq: Int64, key: CallFields.Key) {
        open[seq] = nil
        unlinked[key]?.removeAll { $0 == seq }
        if unlinked[key]?.isEmpty == true { unlinked[key] = nil }
    }
}
