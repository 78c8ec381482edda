import Failures
import Logging
import ServiceLifecycle

/// Signs the audit log's head every `interval` while records are unsigned, and once more on
/// graceful shutdown. The one owner of the checkpoint timer; the record-count trigger lives in
/// the log's commit.
struct AuditCheckpointer: Service {
    let audit: AuditLog
    let interval: Duration
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            } catch {
                break
            }
            await sign()
        }
        await sign()
    }

    private func sign() async {
        do {
            try await audit.checkpoint()
        } catch {
            // Appends fail on their own when the log cannot be written; the timer notes it and
            // keeps its pace, so a log that recovers is signed again at the next tick.
            logger.warning("audit checkpoint not written", metadata: ["error": "\(logDescription(of: error))"])
        }
    }
}
