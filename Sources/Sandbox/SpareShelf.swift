/// The bookkeeping of spares: per-call workers confined ahead of their key's next call, each for
/// exactly one call. A value type so its bounds are tested without processes; ``WorkerPool``
/// spawns and destroys what it decides. `Instant` is the pool's clock's (a test clock in tests).
///
/// A key is whatever a spare must match to serve a call (the pool uses session, lease and tier,
/// and checks the full binding again when it takes one). Ids are handed out once: ``take(_:)``
/// removes what it returns, so a spare never serves two calls.
struct SpareShelf<Key: Hashable & Sendable, Instant: Comparable & Sendable>: Sendable {
    /// Spares (ready or being confined) one key may have.
    let perKey: Int
    /// Spares (ready or being confined) on the whole shelf; 0 turns spares off.
    let maximum: Int

    /// Ready spares by key, oldest first.
    private(set) var ready: [Key: [String]] = [:]
    /// Spares being confined, by key.
    private(set) var preparing: [Key: Int] = [:]
    /// When each key holding spares last asked for one: past ``maximum`` the key that asked least
    /// recently gives up a ready spare.
    private var wanted: [Key: Instant] = [:]

    /// What the pool does for a key that asked for a spare.
    enum Decision: Equatable {
        /// Nothing: the key has its share, or the shelf is full of spares being confined.
        case none
        /// Confine one spare for the key (counted as preparing from now on), after destroying
        /// `evicting` (another key's ready spare) when the shelf was full.
        case prepare(evicting: String?)
    }

    init(perKey: Int, maximum: Int) {
        self.perKey = max(0, perKey)
        self.maximum = max(0, maximum)
    }

    /// Spares ready or being confined, on the whole shelf.
    var count: Int { ready.values.reduce(0) { $0 + $1.count } + preparing.values.reduce(0, +) }

    /// Spares ready or being confined for `key`.
    func held(by key: Key) -> Int { (ready[key]?.count ?? 0) + (preparing[key] ?? 0) }

    /// Whether a spare for `key` is being confined (a call may wait for it rather than spawn).
    func isPreparing(_ key: Key) -> Bool { (preparing[key] ?? 0) > 0 }

    /// A call of `key` asks for one more spare at `now`. Call again while it answers `.prepare` to
    /// fill the key's share.
    mutating func want(_ key: Key, at now: Instant) -> Decision {
        guard maximum > 0, perKey > 0, held(by: key) < perKey else { return .none }
        wanted[key] = now
        if count < maximum {
            preparing[key, default: 0] += 1
            return .prepare(evicting: nil)
        }
        let others = ready.keys.filter { $0 != key && !(ready[$0]?.isEmpty ?? true) }
        guard let victim = others.min(by: { (wanted[$0] ?? now) < (wanted[$1] ?? now) }),
            let id = ready[victim]?.first
        else { return .none }
        remove(id, of: victim)
        preparing[key, default: 0] += 1
        return .prepare(evicting: id)
    }

    /// A preparation for `key` ended: with the spare's id when it is ready, nil when it failed or
    /// was destroyed on the way.
    mutating func prepared(_ key: Key, id: String?) {
        if let count = preparing[key], count > 1 {
            preparing[key] = count - 1
        } else {
            preparing[key] = nil
        }
        if let id { ready[key, default: []].append(id) }
        forgetIfEmpty(key)
    }

    /// The oldest ready spare of `key`, removed from the shelf: it is never handed out again.
    mutating func take(_ key: Key) -> String? {
        guard let id = ready[key]?.first else { return nil }
        remove(id, of: key)
        return id
    }

    /// Forgets a ready spare that was destroyed (retired, idle, made room).
    mutating func discard(_ id: String, of key: Key) {
        remove(id, of: key)
    }

    private mutating func remove(_ id: String, of key: Key) {
        guard var ids = ready[key], let index = ids.firstIndex(of: id) else { return }
        ids.remove(at: index)
        ready[key] = ids.isEmpty ? nil : ids
        forgetIfEmpty(key)
    }

    private mutating func forgetIfEmpty(_ key: Key) {
        if held(by: key) == 0 { wanted[key] = nil }
    }
}
