import PostgresNIO

extension PostgresStore {
    /// The advisory lock every node takes (transaction-scoped) while it migrates: `LHSTORE1` in
    /// ASCII. Nodes starting at once queue on it; the first applies what is missing, the others
    /// then find every migration recorded and do nothing.
    public static let migrationLockKey: Int64 = 0x4C48_5354_4F52_4531

    /// One schema step, applied once per database, recorded in `schema_migrations` by its id.
    struct Migration {
        let id: String
        let statements: [String]
    }

    /// The store's schema, oldest first. Ids carry a `store-` prefix: other parts of the runner
    /// (the audit trail) record their own steps in the same `schema_migrations` table.
    ///
    /// Columns mirror ``SQLiteStore``: a session or approval is its JSON body (the same encoder, so
    /// either store reads back exactly what the other would), beside the columns queries filter and
    /// order on. Times that are compared or ordered are epoch seconds (`double precision`), as in
    /// SQLite; ids are ordered `COLLATE "C"` (bytewise, as SQLite does) whatever the database's locale.
    static let migrations: [Migration] = [
        Migration(
            id: "store-v1",
            statements: [
                """
                CREATE TABLE workspaces (
                    tenant_id text NOT NULL,
                    workspace_id text NOT NULL,
                    root text NOT NULL UNIQUE,
                    read_only boolean NOT NULL DEFAULT false,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (tenant_id, workspace_id))
                """,
                """
                CREATE TABLE sessions (
                    id text PRIMARY KEY,
                    tenant_id text NOT NULL,
                    version bigint NOT NULL,
                    live_until double precision NOT NULL,
                    body text NOT NULL)
                """,
                "CREATE INDEX sessions_by_tenant_live_until ON sessions (tenant_id, live_until)",
                "CREATE INDEX sessions_by_live_until ON sessions (live_until)",
                """
                CREATE TABLE claim_bindings (
                    key_id text NOT NULL,
                    tenant_id text NOT NULL,
                    jti text NOT NULL,
                    fingerprint text NOT NULL,
                    connection_id text NOT NULL,
                    session_id text NOT NULL,
                    expires_at double precision NOT NULL,
                    PRIMARY KEY (key_id, tenant_id, jti))
                """,
                "CREATE INDEX claim_bindings_by_expiry ON claim_bindings (expires_at)",
                """
                CREATE TABLE admin_keys (
                    id text PRIMARY KEY,
                    tenant_id text NOT NULL,
                    key_hash text NOT NULL UNIQUE,
                    created_at timestamptz NOT NULL DEFAULT now())
                """,
                """
                CREATE TABLE approvals (
                    id text PRIMARY KEY,
                    tenant_id text NOT NULL,
                    session_id text NOT NULL,
                    status text NOT NULL,
                    binding_key text NOT NULL,
                    fingerprint text NOT NULL UNIQUE,
                    created_at double precision NOT NULL,
                    body text NOT NULL)
                """,
                "CREATE INDEX approvals_by_tenant ON approvals (tenant_id, created_at)",
                "CREATE INDEX approvals_by_session ON approvals (session_id)",
                "CREATE INDEX approvals_by_binding_key ON approvals (binding_key)",
                // A tenant's slot fixes the host uid/gid its workers run as and its workspaces are
                // owned by; it must outlive the tenant's workspaces, so it is never deleted.
                """
                CREATE TABLE tenant_host_ids (
                    tenant_id text PRIMARY KEY,
                    slot integer NOT NULL UNIQUE CHECK (slot >= 0))
                """,
            ])
    ]

    /// Applies the migrations this database lacks, in one transaction under
    /// ``migrationLockKey``: safe when several nodes start at once (they wait for each other, and
    /// a node arriving after the first finds nothing to do). Call it once at start, before serving,
    /// while ``run()`` runs.
    ///
    /// - Throws: ``PostgresStoreError`` when the server fails, or with
    ///   ``PostgresStoreError/Code/schemaTooNew`` when the database holds store migrations this
    ///   binary does not know (a newer runner migrated it): nothing is changed then.
    public func migrate() async throws {
        let logger = self.logger
        // A node queued behind another's migration may wait longer than one statement's limit.
        let applied = try await transaction(limit: .seconds(90)) { connection in
            try await connection.query("SET LOCAL lock_timeout = '60s'", logger: logger)
            try await connection.query("SET LOCAL statement_timeout = '60s'", logger: logger)
            try await connection.query("SELECT pg_advisory_xact_lock(\(Self.migrationLockKey))", logger: logger)
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    id text PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now())
                """, logger: logger)
            let done = Set(
                try await self.rows("SELECT id FROM schema_migrations", on: connection).map {
                    try $0.decode(String.self)
                })
            let known = Set(Self.migrations.map(\.id))
            if let unknown = done.filter({ $0.hasPrefix("store-") && !known.contains($0) }).sorted().first {
                throw PostgresStoreError(
                    .schemaTooNew,
                    "the database holds store migration \(unknown), which this runner does not know: run the newer runner"
                )
            }
            var applied: [String] = []
            for migration in Self.migrations where !done.contains(migration.id) {
                for statement in migration.statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query(
                    "INSERT INTO schema_migrations (id) VALUES (\(migration.id))", logger: logger)
                applied.append(migration.id)
            }
            return applied
        }
        if !applied.isEmpty {
            logger.info("migrated the PostgreSQL store", metadata: ["migrations": "\(applied.joined(separator: ", "))"])
        }
    }
}
