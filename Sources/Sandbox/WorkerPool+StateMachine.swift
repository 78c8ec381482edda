extension WorkerPool {
    /// The pool's bounds and timeouts, with their defaults: the one place they are written
    /// (`leasehold.yaml`'s `worker_*` keys override them; ``LeaseholdConfig`` reads these).
    public struct Settings: Sendable, Hashable {
        /// A warm worker without a call for this long is destroyed.
        public var idleTimeout: Duration
        /// A spare not taken for this long is destroyed.
        public var spareIdleTimeout: Duration
        /// Spares (ready or being confined) one session keeps per lease and per-call tier; two let
        /// a session calling back to back find one ready while the next is confined.
        public var sparesPerSession: Int
        /// The most spares on this runner at once (0: none); past it, the spare of the session
        /// that called least recently makes room. They count against `maximumWorkers` too.
        public var maximumSpares: Int
        /// Calls one session may have in flight at once.
        public var maximumCallsPerSession: Int
        /// The most live workers (warm, spares and in-flight per-call workers) on this runner.
        public var maximumWorkers: Int
        /// What each tenant may hold: live workers and calls in flight.
        public var shares: TenantShares

        /// Settings; `shares` defaults to a quarter of `maximumWorkers` and 64 calls per tenant.
        public init(
            idleTimeout: Duration = .seconds(300), spareIdleTimeout: Duration = .seconds(60), sparesPerSession: Int = 2,
            maximumSpares: Int = 16, maximumCallsPerSession: Int = 8, maximumWorkers: Int = 512,
            shares: TenantShares? = nil
        ) {
            self.idleTimeout = idleTimeout
            self.spareIdleTimeout = spareIdleTimeout
            self.sparesPerSession = sparesPerSession
            self.maximumSpares = maximumSpares
            self.maximumCallsPerSession = maximumCallsPerSession
            self.maximumWorkers = maximumWorkers
            self.shares = shares ?? TenantShares(maximumWorkers: maximumWorkers)
        }

        /// Every default.
        public static let defaults = Settings()
    }

    /// The pool's rules without processes: which worker a call gets, when a worker dies and why,
    /// which calls wait and which are refused (DESIGN.md §3 invariant 2). Every method is
    /// synchronous and returns what to do; ``WorkerPool`` (the actor) only performs it: spawns,
    /// runs exchanges, kills process trees, resumes waiting calls, sleeps until ``deadline``.
    ///
    /// Because nothing here awaits, no rule is checked on a state that changed underneath it: a
    /// retirement removes a worker from the books at once (its process is killed right after), and
    /// a call that waited (for its session's lane, for a spare being confined, for a spawn) is
    /// checked again against the retirements recorded meanwhile.
    ///
    /// Generic over its clock so the lifetime rules are tested with a test clock in milliseconds
    /// (hummingbird `HTTPConnectionStateHandler` shape).
    struct StateMachine<C: Clock>: Sendable where C.Duration == Duration {
        /// A call as the rules see it.
        struct Call: Sendable, Hashable {
            var invocation: ToolInvocation
            /// When the gateway authorized it: a retirement at or after this voids it.
            var authorizedAt: C.Instant
            /// When its lease ends on this clock; nil for a process its tenant's sessions (or all
            /// tenants) share, which ends with the runner (its idle timeout still applies).
            var leaseEnd: C.Instant?

            init(_ invocation: ToolInvocation, authorizedAt: C.Instant, leaseEnd: C.Instant?) {
                self.invocation = invocation
                self.authorizedAt = authorizedAt
                switch invocation.upstream?.scope {
                case .tenant?, .shared?: self.leaseEnd = nil
                case .session?, nil: self.leaseEnd = leaseEnd
                }
            }

            var binding: Binding { Binding(invocation) }
            var warmKey: WarmKey { WarmKey(invocation) }
            /// The key of the call's spares (per-call tiers of built-in tools only).
            var spareKey: WarmKey {
                WarmKey(sessionID: invocation.sessionID, leaseID: invocation.leaseID, tier: invocation.tier.name)
            }
            /// A fresh worker per call, or the warm worker of its key (every upstream call: the
            /// server's process is long-lived whatever the tier says).
            var isolation: WorkerTier.Isolation {
                invocation.upstream == nil ? invocation.tier.isolation : .session
            }
        }

        /// The bounds the rules hold.
        typealias Settings = WorkerPool.Settings

        /// A worker to destroy: it is already off the books; the actor kills its process tree and
        /// audits `worker.destroyed` with `reason`.
        struct Destroy: Sendable, Hashable {
            var id: String
            var reason: WorkerRetirement
            var detail: String?
            var binding: Binding
        }

        /// A waiting call, resumed by the actor when the rules say so.
        typealias Waiter = UInt64

        /// A live worker on the books.
        struct Entry: Sendable, Hashable {
            var binding: Binding
            var leaseEnd: C.Instant?
            var warmKey: WarmKey?
            /// Set for a per-call worker prepared ahead of its call (a spare), until it is taken.
            var spareKey: WarmKey?
            var lastUsed: C.Instant
        }

        /// A FIFO lane per warm key: one exchange at a time per worker, callers served in order.
        private struct Lane: Sendable {
            var waiters: [Waiter] = []
        }

        let settings: Settings
        private(set) var entries: [String: Entry] = [:]
        private var warm: [WarmKey: String] = [:]
        private(set) var spares: SpareShelf<WarmKey, C.Instant>
        /// Calls waiting for a spare of their key that is being confined (a call that arrives
        /// meanwhile takes it rather than queueing a spawn of its own behind it).
        private var spareWaiters: [WarmKey: [Waiter]] = [:]
        private var lanes: [WarmKey: Lane] = [:]
        private var nextWaiter: Waiter = 0
        /// When each session and workspace was last retired, and each session's lease in force
        /// after its latest renewal: a call (or spare) authorized before such a moment never
        /// starts or keeps a worker after it. Entries older than an hour are pruned past 10,000.
        private var sessionRetiredAt: [String: C.Instant] = [:]
        private var workspaceRetiredAt: [String: C.Instant] = [:]
        private var leaseRenewedAt: [String: (lease: String, at: C.Instant)] = [:]
        /// Calls in flight per session and per tenant: one session or tenant cannot hold the
        /// runner's workers (found in review: 24 concurrent shell.run calls got 24 exec workers).
        private var inFlight: [String: Int] = [:]
        private var tenantInFlight: [String: Int] = [:]
        /// Consecutive failures (spawn, crash, protocol) of the upstream process of a key, and
        /// when the next start may be tried.
        private var upstreamFailures: [WarmKey: (count: Int, retryAt: C.Instant)] = [:]
        /// Leases the runner acts on when they end (``LeaseEnd``), by lease id.
        private var watchedLeases: [String: LeaseEnd] = [:]
        private(set) var shuttingDown = false

        init(settings: Settings) {
            self.settings = settings
            self.spares = SpareShelf(perKey: settings.sparesPerSession, maximum: settings.maximumSpares)
        }

        // MARK: Admission

        /// Why a call is refused before it gets a worker.
        struct Refusal: Sendable, Hashable, Error {
            var code: String
            var message: String
        }

        /// A call arrived at `now`: admitted (counted in flight until ``callLeft(_:)``) or refused.
        mutating func callArrived(_ call: Call, now: C.Instant) -> Refusal? {
            let invocation = call.invocation
            guard !shuttingDown else {
                return Refusal(code: SandboxError.Code.shuttingDown.rawValue, message: "the runner is shutting down")
            }
            guard !isVoided(call) else { return Self.voided }
            guard inFlight[invocation.sessionID, default: 0] < settings.maximumCallsPerSession else {
                return Refusal(
                    code: SandboxError.Code.tooManyCalls.rawValue,
                    message:
                        "session \(invocation.sessionID) already has \(settings.maximumCallsPerSession) calls in flight; wait for one to finish"
                )
            }
            let tenantCalls = settings.shares.caps(invocation.tenantID).callsInFlight
            guard tenantInFlight[invocation.tenantID, default: 0] < tenantCalls else {
                return Refusal(
                    code: SandboxError.Code.tenantAtLimit.rawValue,
                    message:
                        "tenant \(invocation.tenantID) already has \(tenantCalls) calls in flight; wait for one to finish"
                )
            }
            if call.isolation == .session, let wait = upstreamBackoff(call.warmKey, now: now) {
                return Refusal(
                    code: SandboxError.Code.upstreamUnavailable.rawValue,
                    message:
                        "server \(invocation.upstream?.launch.server ?? "") failed to start or crashed; it is restarted in \(wait) ms"
                )
            }
            inFlight[invocation.sessionID, default: 0] += 1
            tenantInFlight[invocation.tenantID, default: 0] += 1
            return nil
        }

        /// An admitted call left the pool (answered, refused or voided on the way).
        mutating func callLeft(_ call: Call) {
            let session = call.invocation.sessionID
            let tenant = call.invocation.tenantID
            inFlight[session, default: 1] -= 1
            if inFlight[session] == 0 { inFlight[session] = nil }
            tenantInFlight[tenant, default: 1] -= 1
            if tenantInFlight[tenant] == 0 { tenantInFlight[tenant] = nil }
        }

        /// The refusal of a call whose session, lease or workspace was retired after it was
        /// authorized.
        static var voided: Refusal {
            Refusal(
                code: SandboxError.Code.retired.rawValue,
                message:
                    "the session, its lease or its workspace was retired after this call was authorized; it did not run"
            )
        }

        /// Whether something retired the call's session, lease or workspace at or after the
        /// moment the gateway authorized it.
        func isVoided(_ call: Call) -> Bool {
            let invocation = call.invocation
            let since = call.authorizedAt
            if let at = sessionRetiredAt[invocation.sessionID], at >= since { return true }
            if let at = workspaceRetiredAt[invocation.tenantID + "|" + invocation.workspaceID], at >= since {
                return true
            }
            if let renewal = leaseRenewedAt[invocation.sessionID], renewal.at >= since,
                renewal.lease != invocation.leaseID
            {
                return true
            }
            return false
        }

        // MARK: Per-call workers

        /// What a per-call call does next about its worker.
        enum SpareStep: Sendable, Hashable {
            /// Wait until a spare of its key being confined is ready (or fails), then ask again.
            case wait(Waiter)
            /// Run on this spare (off the shelf: no other call can be handed it).
            case use(String, destroy: [Destroy])
            /// Spawn a worker of its own.
            case spawn(destroy: [Destroy])
            /// Its session, lease or workspace was retired meanwhile: it does not run.
            case voided
        }

        /// A per-call call asks for a spare. Spares of its key whose binding no longer matches
        /// (the tier's settings, the actor or the workspace moved) are destroyed on the way.
        mutating func takeSpare(for call: Call) -> SpareStep {
            guard !isVoided(call) else { return .voided }
            let key = call.warmKey
            if spares.ready[key] == nil, spares.isPreparing(key) {
                let waiter = newWaiter()
                spareWaiters[key, default: []].append(waiter)
                return .wait(waiter)
            }
            let binding = call.binding
            var destroyed: [Destroy] = []
            while let id = spares.take(key) {
                guard let entry = entries[id] else { continue }
                entries[id]?.spareKey = nil
                if entry.binding == binding { return .use(id, destroy: destroyed) }
                let reason: WorkerRetirement = entry.binding.tier != binding.tier ? .tierChanged : .handOff
                if let destroy = remove(id, reason: reason) { destroyed.append(destroy) }
            }
            return .spawn(destroy: destroyed)
        }

        // MARK: Warm workers

        /// Enters the lane of a warm key: nil to go on at once, else a waiter resumed by
        /// ``leaveLane(_:)`` of the call ahead.
        mutating func enterLane(_ key: WarmKey) -> Waiter? {
            if lanes[key] == nil {
                lanes[key] = Lane()
                return nil
            }
            let waiter = newWaiter()
            lanes[key]?.waiters.append(waiter)
            return waiter
        }

        /// Leaves the lane of a warm key: the next waiter to resume, if any.
        mutating func leaveLane(_ key: WarmKey) -> Waiter? {
            guard var lane = lanes[key] else { return nil }
            guard !lane.waiters.isEmpty else {
                lanes[key] = nil
                return nil
            }
            let next = lane.waiters.removeFirst()
            lanes[key] = lane
            return next
        }

        /// What a warm call (holding its lane) does next about its worker.
        enum WarmStep: Sendable, Hashable {
            /// Run on the key's warm worker.
            case use(String)
            /// Spawn one, after destroying the old one bound to what was.
            case spawn(destroy: Destroy?)
            /// Its session, lease or workspace was retired while it waited.
            case voided
        }

        /// A call holding its lane asks for its warm worker.
        mutating func warmWorker(for call: Call) -> WarmStep {
            guard !isVoided(call) else { return .voided }
            guard let id = warm[call.warmKey], let entry = entries[id] else { return .spawn(destroy: nil) }
            let binding = call.binding
            if entry.binding == binding { return .use(id) }
            // Same session and lease, but the tier settings, actor or workspace moved: the warm
            // worker belongs to what was, never to what is.
            let reason: WorkerRetirement = entry.binding.tier != binding.tier ? .tierChanged : .handOff
            return .spawn(destroy: remove(id, reason: reason))
        }

        // MARK: Spawning

        /// Room for one more worker of the call's tenant: the idle workers to destroy first, and a
        /// refusal when there is none to make. A spare (`spare`) never takes a slot by destroying
        /// a worker: it is only a head start.
        mutating func makeRoom(for call: Call, spare: Bool) -> (destroy: [Destroy], refusal: SandboxError?) {
            let tenant = call.invocation.tenantID
            let tenantCap = settings.shares.caps(tenant).workers
            if spare, entries.count >= settings.maximumWorkers || held(by: tenant) >= tenantCap {
                return ([], SandboxError(.tenantAtLimit, "no room for a spare of tenant \(tenant)"))
            }
            var destroyed: [Destroy] = []
            while held(by: tenant) >= tenantCap {
                // At its own cap a tenant makes room among its own idle workers, never others'.
                guard let id = evictable(from: tenant) else {
                    return (
                        destroyed,
                        SandboxError(
                            .tenantAtLimit,
                            "tenant \(tenant) holds its limit of \(tenantCap) live workers, all in calls; retry shortly"
                        )
                    )
                }
                if let destroy = remove(id, reason: .idle, detail: "made room under the tenant's worker limit") {
                    destroyed.append(destroy)
                }
            }
            while entries.count >= settings.maximumWorkers {
                guard let id = evictable(from: nil) else {
                    return (
                        destroyed,
                        SandboxError(
                            .spawnFailed,
                            "the runner is at its limit of \(settings.maximumWorkers) live workers, all in calls; retry shortly"
                        )
                    )
                }
                if let destroy = remove(id, reason: .idle, detail: "made room under the runner's worker limit") {
                    destroyed.append(destroy)
                }
            }
            return (destroyed, nil)
        }

        /// A worker for `call` answered its handshake at `now`: on the books from now on, as the
        /// key's warm worker, as a spare, or as a per-call worker. Returns whether a retirement
        /// that came while it was confined voids it (the actor then destroys it).
        mutating func spawned(_ id: String, for call: Call, warmKey: WarmKey?, spareKey: WarmKey?, now: C.Instant)
            -> Bool
        {
            entries[id] = Entry(
                binding: call.binding, leaseEnd: call.leaseEnd, warmKey: warmKey, spareKey: spareKey, lastUsed: now)
            if let warmKey { warm[warmKey] = id }
            return isVoided(call) || shuttingDown
        }

        /// The worker to destroy to make room: a spare first (only a head start), then the warm
        /// worker idle longest (none in a call or with calls queued for it) — of `tenant` when
        /// given, else of the tenants holding more than an equal share of the runner's workers,
        /// else of anyone.
        private func evictable(from tenant: String?) -> String? {
            let candidates = entries.filter { _, entry in
                guard tenant == nil || entry.binding.tenantID == tenant else { return false }
                if entry.spareKey != nil { return true }
                guard let key = entry.warmKey, warm[key] != nil else { return false }
                return lanes[key] == nil
            }
            if let spare = candidates.first(where: { $0.value.spareKey != nil }) { return spare.key }
            var held: [String: Int] = [:]
            for entry in entries.values { held[entry.binding.tenantID, default: 0] += 1 }
            let share = settings.maximumWorkers / max(1, held.count)
            let oldest = { (pool: [String: Entry]) in pool.min { $0.value.lastUsed < $1.value.lastUsed }?.key }
            if tenant == nil,
                let above = oldest(candidates.filter { held[$0.value.binding.tenantID, default: 0] > share })
            {
                return above
            }
            return oldest(candidates)
        }

        private func held(by tenant: String) -> Int {
            entries.values.count(where: { $0.binding.tenantID == tenant })
        }

        // MARK: After a call

        /// A call finished on worker `id` at `now`. `retirement`: the worker must die (a limit
        /// killed it, it crashed, its upstream server failed). A per-call worker always dies: it
        /// never serves a second call, whatever happened in this one. A warm worker that lives
        /// on is idle from now.
        mutating func callFinished(
            on id: String, _ call: Call, retirement: WorkerRetirement?, detail: String? = nil, now: C.Instant
        ) -> Destroy? {
            if call.isolation == .call { return remove(id, reason: retirement ?? .callFinished, detail: detail) }
            if let retirement { return remove(id, reason: retirement, detail: detail) }
            entries[id]?.lastUsed = now
            entries[id]?.leaseEnd = call.leaseEnd
            return nil
        }

        // MARK: Upstream servers

        /// Backs off restarting a failing upstream: at once after the first failure, then 250 ms,
        /// doubling to at most 30 s.
        mutating func upstreamFailed(_ key: WarmKey, now: C.Instant) {
            let count = (upstreamFailures[key]?.count ?? 0) + 1
            let delay: Duration = count <= 1 ? .zero : .milliseconds(min(30_000, 250 << min(count - 2, 7)))
            upstreamFailures[key] = (count, now.advanced(by: delay))
            if upstreamFailures.count > 10_000 { upstreamFailures = upstreamFailures.filter { $0.value.retryAt > now } }
        }

        /// The upstream of `key` answered: its failures in a row start again from zero.
        mutating func upstreamAnswered(_ key: WarmKey) {
            upstreamFailures[key] = nil
        }

        /// Milliseconds until the upstream of `key` may be started again, nil when it may be now.
        func upstreamBackoff(_ key: WarmKey, now: C.Instant) -> Int? {
            guard key.server != "", let failure = upstreamFailures[key], failure.retryAt > now else { return nil }
            let left = now.duration(to: failure.retryAt)
            return Int(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)
        }

        // MARK: Spares

        /// A per-call call asks for its key's spares (at `now`): how many to confine, and the
        /// spares of other keys that make room under the runner's spare limit.
        mutating func reserveSpares(for call: Call, now: C.Instant) -> (count: Int, destroy: [Destroy]) {
            let key = call.spareKey
            var reserved = 0
            var destroyed: [Destroy] = []
            // A spare is only a head start: it never takes a slot a call could use.
            while !shuttingDown, !isVoided(call), call.leaseEnd.map({ now.duration(to: $0) > .seconds(1) }) ?? true,
                entries.count + spares.preparing.values.reduce(0, +) < settings.maximumWorkers
            {
                guard case .prepare(let evicting) = spares.want(key, at: now) else { break }
                reserved += 1
                if let evicting,
                    let destroy = remove(evicting, reason: .idle, detail: "made room under the runner's spare limit")
                {
                    destroyed.append(destroy)
                }
            }
            return (reserved, destroyed)
        }

        /// A spare reserved by ``reserveSpares(for:now:)`` is ready (`id`) or did not come to be
        /// (nil): the calls waiting for it to resume.
        mutating func sparePrepared(_ key: WarmKey, id: String?) -> [Waiter] {
            spares.prepared(key, id: id.flatMap { entries[$0] != nil ? $0 : nil })
            return spareWaiters.removeValue(forKey: key) ?? []
        }

        // MARK: Retiring

        /// Takes a worker off the books; nil when it was not on them (already destroyed).
        mutating func remove(_ id: String, reason: WorkerRetirement, detail: String? = nil) -> Destroy? {
            guard let entry = entries.removeValue(forKey: id) else { return nil }
            if let key = entry.warmKey, warm[key] == id { warm[key] = nil }
            if let key = entry.spareKey { spares.discard(id, of: key) }
            return Destroy(id: id, reason: reason, detail: detail, binding: entry.binding)
        }

        private mutating func removeAll(reason: WorkerRetirement, where matches: (Entry) -> Bool) -> [Destroy] {
            entries.filter { matches($0.value) }.keys.sorted().compactMap { remove($0, reason: reason) }
        }

        /// A policy change altered these tiers: their warm workers and spares die.
        mutating func tiersChanged(_ tiers: Set<String>) -> [Destroy] {
            removeAll(reason: .tierChanged) {
                tiers.contains($0.binding.tier.name) && ($0.warmKey != nil || $0.spareKey != nil)
            }
        }

        /// An upstream server was reconfigured or removed: every process of it dies.
        mutating func retire(upstream server: String) -> [Destroy] {
            upstreamFailures = upstreamFailures.filter { $0.key.server != server }
            return removeAll(reason: .upstreamChanged) { $0.binding.upstream?.launch.server == server }
        }

        /// The session was revoked or handed off at `now`: every worker of it dies (every lease),
        /// and calls authorized before now never run.
        mutating func retire(session: String, reason: WorkerRetirement, now: C.Instant) -> [Destroy] {
            pruneRetirements(now: now)
            sessionRetiredAt[session] = now
            return removeAll(reason: reason) { $0.binding.sessionID == session }
        }

        /// The session's lease was renewed (`currentLease`) or revoked (nil) at `now`: its workers
        /// of any other lease die.
        mutating func retire(
            session: String, exceptLease currentLease: String?, reason: WorkerRetirement, now: C.Instant
        )
            -> [Destroy]
        {
            pruneRetirements(now: now)
            if let currentLease {
                leaseRenewedAt[session] = (currentLease, now)
            } else {
                sessionRetiredAt[session] = now
            }
            return removeAll(reason: reason) { $0.binding.sessionID == session && $0.binding.leaseID != currentLease }
        }

        /// The workspace was removed at `now`: every worker bound to it dies.
        mutating func retire(tenant: String, workspace: String, reason: WorkerRetirement, now: C.Instant) -> [Destroy] {
            pruneRetirements(now: now)
            workspaceRetiredAt[tenant + "|" + workspace] = now
            return removeAll(reason: reason) { $0.binding.tenantID == tenant && $0.binding.workspaceID == workspace }
        }

        /// The runner shuts down: every worker dies and no call is admitted any more.
        mutating func shutdown() -> [Destroy] {
            shuttingDown = true
            watchedLeases = [:]
            return removeAll(reason: .shutdown) { _ in true }
        }

        private mutating func pruneRetirements(now: C.Instant) {
            guard sessionRetiredAt.count + workspaceRetiredAt.count + leaseRenewedAt.count > 10_000 else { return }
            let cutoff = now.advanced(by: .seconds(-3600))
            sessionRetiredAt = sessionRetiredAt.filter { $0.value > cutoff }
            workspaceRetiredAt = workspaceRetiredAt.filter { $0.value > cutoff }
            leaseRenewedAt = leaseRenewedAt.filter { $0.value.at > cutoff }
        }

        // MARK: Time

        /// A lease the runner acts on when it ends (the gateway closes the session's connections
        /// and audits `lease.expired`), whether or not the session holds a worker.
        /// The wall clock stepped by `step` (forward: positive): every lease end, a wall-clock time
        /// kept on this clock, comes `step` sooner.
        mutating func wallClockStepped(by step: Duration) {
            for (id, entry) in entries {
                if let end = entry.leaseEnd { entries[id]?.leaseEnd = end.advanced(by: .zero - step) }
            }
            for (id, lease) in watchedLeases { watchedLeases[id]?.at = lease.at.advanced(by: .zero - step) }
        }

        struct LeaseEnd: Sendable, Hashable {
            var sessionID: String
            var leaseID: String
            var at: C.Instant
        }

        /// Watches a lease's end: ``tick(now:)`` reports it once when it comes. Returns false
        /// when it is already watched.
        mutating func watchLease(_ lease: LeaseEnd) -> Bool {
            guard !shuttingDown, watchedLeases[lease.leaseID] == nil else { return false }
            watchedLeases[lease.leaseID] = lease
            return true
        }

        /// The earliest moment something is due: a worker's lease end or idle timeout, or a
        /// watched lease's end. Nil: nothing is.
        var deadline: C.Instant? {
            var next: C.Instant? = nil
            func consider(_ instant: C.Instant) { if next.map({ instant < $0 }) ?? true { next = instant } }
            for entry in entries.values {
                if let end = entry.leaseEnd { consider(end) }
                if let idle = idleDeadline(entry) { consider(idle) }
            }
            for lease in watchedLeases.values { consider(lease.at) }
            return next
        }

        /// The earliest moment something is due for worker `id` (its lease end or idle timeout).
        func deadline(of id: String) -> C.Instant? {
            guard let entry = entries[id] else { return nil }
            return [entry.leaseEnd, idleDeadline(entry)].compactMap { $0 }.min()
        }

        private func idleDeadline(_ entry: Entry) -> C.Instant? {
            if entry.spareKey != nil { return entry.lastUsed.advanced(by: settings.spareIdleTimeout) }
            if entry.warmKey != nil { return entry.lastUsed.advanced(by: settings.idleTimeout) }
            return nil
        }

        /// What is due at `now`.
        struct Due: Sendable, Hashable {
            /// Workers whose lease ended (`lease_expired`) or that sat idle too long.
            var destroy: [Destroy] = []
            /// Watched leases that ended.
            var leasesEnded: [LeaseEnd] = []
        }

        /// The clock reached `now`: destroys each worker at its lease's end (a per-call worker in
        /// its call too: a call never outlives its lease) and a warm worker or spare after its
        /// idle timeout without a call; reports watched leases that ended.
        mutating func tick(now: C.Instant) -> Due {
            var due = Due()
            for id in entries.keys.sorted() {
                guard let entry = entries[id] else { continue }
                if let end = entry.leaseEnd, end <= now {
                    if let destroy = remove(id, reason: .leaseExpired) { due.destroy.append(destroy) }
                } else if let idle = idleDeadline(entry), idle <= now {
                    if let destroy = remove(id, reason: .idle) { due.destroy.append(destroy) }
                }
            }
            for lease in watchedLeases.values.sorted(by: { $0.leaseID < $1.leaseID }) where lease.at <= now {
                watchedLeases[lease.leaseID] = nil
                due.leasesEnded.append(lease)
            }
            return due
        }

        private mutating func newWaiter() -> Waiter {
            nextWaiter += 1
            return nextWaiter
        }
    }
}
