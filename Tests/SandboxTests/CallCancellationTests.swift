import Sandbox
import Synchronization
import Testing

/// A client's cancellation reaches whatever runs the call at that moment, once; before and after,
/// nothing.
struct CallCancellationTests {
    @Test func aHandlerRunsOnceWhileItsOperationRuns() async {
        let cancellation = CallCancellation()
        let calls = Mutex(0)
        await cancellation.whileRunning(onCancel: { calls.withLock { $0 += 1 } }) {
            cancellation.cancel()
            cancellation.cancel()
        }
        #expect(calls.withLock { $0 } == 1)
        #expect(cancellation.isCancelled)
    }

    @Test func aHandlerRegisteredAfterTheCancelRunsAtOnce() async {
        let cancellation = CallCancellation()
        cancellation.cancel()
        let calls = Mutex(0)
        await cancellation.whileRunning(onCancel: { calls.withLock { $0 += 1 } }) {
            #expect(calls.withLock { $0 } == 1)
        }
    }

    @Test func aHandlerIsGoneOnceItsOperationEnded() async {
        let cancellation = CallCancellation()
        let calls = Mutex(0)
        await cancellation.whileRunning(onCancel: { calls.withLock { $0 += 1 } }) {}
        cancellation.cancel()
        #expect(calls.withLock { $0 } == 0)
    }
}
