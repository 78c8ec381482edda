import Testing

@testable import Runner

/// `--store`, `LEASEHOLD_STORE` and `store:` name where state lives (operator input): a location
/// that cannot be used is refused with its reason, never guessed at.
@Suite struct StoreLocationTests {
    @Test func sqliteAndPostgresLocationsParse() throws {
        #expect(try StoreLocation(parsing: "sqlite:", environment: [:]) == .sqlite(directory: nil))
        #expect(try StoreLocation(parsing: "sqlite:/var/lib/lh", environment: [:]) == .sqlite(directory: "/var/lib/lh"))
        let parsed = try StoreLocation(parsing: "postgres://lh@db.internal:6543/state?pool=32", environment: [:])
        #expect(
            parsed
                == .postgres(
                    StoreLocation.PostgresLocation(
                        host: "db.internal", port: 6543, user: "lh", database: "state", poolSize: 32)))
    }

    @Test func thePasswordComesFromTheEnvironmentAndIsNeverPrinted() throws {
        let parsed = try StoreLocation(
            parsing: "postgresql://lh@db/state", environment: ["LEASEHOLD_STORE_PASSWORD": "s3cret"])
        guard case .postgres(let location) = parsed else {
            Issue.record("not a PostgreSQL location")
            return
        }
        #expect(location.password == "s3cret" && location.port == 5432 && location.poolSize == 16)
        #expect(!parsed.description.contains("s3cret"))
        let inURL = try StoreLocation(parsing: "postgres://lh:hunter2@db/state", environment: [:])
        #expect(!inURL.description.contains("hunter2"))
    }

    @Test(arguments: [
        "mysql://lh@db/state", "postgres://db/state", "postgres://lh@/state", "postgres://lh@db",
        "postgres://lh@db/a/b", "postgres://lh@db:70000/state", "postgres://lh@db/state?pool=0",
        "postgres://lh@db/state?pool=513", "postgres://lh@db/state?sslmode=disable", "sqlite:/tmp/a\0b", "",
    ])
    func unusableLocationsAreRefused(text: String) {
        #expect(throws: StoreLocation.Invalid.self) { try StoreLocation(parsing: text, environment: [:]) }
    }
}
