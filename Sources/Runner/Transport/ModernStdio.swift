import Foundation

/// MCP 2026-07-28 over stdio: the messages of the revision (``ModernProtocol/claims(_:versionHeader:)``)
/// are taken off the pipe before the SDK sees them and answered by ``ModernEdge``. The pipe is one
/// client, so it is the claim binding, as for the older revisions; the claim comes per request in
/// `params._meta["dev.leasehold/claim"]` or was bound at process start. There are no headers, so
/// the header rules of the HTTP transport do not apply.
struct ModernStdio: Sendable {
    let gateway: Gateway
    let connectionID: String
    let fallbackClaim: String?
    /// Where replies go (the wrapped transport's `send`).
    let send: @Sendable (Data) async -> Void

    /// Whether `data` is a message of the revision, which is then answered (in a task of its own:
    /// requests of one client run concurrently, as the SDK runs them).
    func take(_ data: Data) async -> Bool {
        guard let message = try? JSONSerialization.jsonObject(with: data, options: []) as? [String: Any],
            ModernProtocol.claims(message, versionHeader: nil)
        else { return false }
        // Notifications of the revision carry nothing Leasehold acts on.
        guard message["id"] != nil else { return true }
        let request: ModernProtocol.Request
        switch ModernProtocol.classify(message, headers: nil) {
        case .failure(let rejection):
            await send(ModernProtocol.errorMessage(id: message["id"], rejection))
            return true
        case .success(let classified):
            request = classified
        }
        // Unstructured: the reader must go on reading while a call runs (a cancelled pipe ends
        // the call's writes, and the gateway records its outcome either way). Not a child of the
        // stdio service: it would make stdin's end wait for every running call before the group's
        // shutdown destroys the workers that end them.
        Task { await answer(request) }
        return true
    }

    private func answer(_ request: ModernProtocol.Request) async {
        let meta = request.params["_meta"] as? [String: Any]
        let token = meta?[MCPHandlers.metaClaimKey] as? String ?? fallbackClaim
        let context: CallContext
        do {
            context = try await gateway.authenticate(
                token: token, connectionID: connectionID, requestID: request.idText, source: "stdio")
        } catch {
            await send(
                ModernProtocol.errorMessage(id: request.id, .init(code: -32001, message: error.description)))
            return
        }
        if request.method == "subscriptions/listen" {
            await listen(request, context: context)
            return
        }
        let reply = await ModernEdge(gateway: gateway).answer(request, context: context) { id in
            "urn:leasehold:approval:\(id)"
        }
        await send(reply.body)
    }

    /// Acknowledges, then relays `list_changed` until the pipe's connection closes.
    private func listen(_ request: ModernProtocol.Request, context: CallContext) async {
        let filter = request.params["notifications"] as? [String: Any]
        let wantsTools = filter?["toolsListChanged"] as? Bool == true
        let (frames, continuation) = AsyncStream<Data>.makeStream(bufferingPolicy: .bufferingNewest(16))
        if wantsTools {
            await gateway.connections.recordListed(
                gateway.resolver.listingJSON(in: context.scope).names, connectionID: connectionID,
                claim: context.claim)
        }
        // The acknowledgment is the stream's first frame.
        continuation.yield(
            ModernProtocol.listenFrame(
                method: "notifications/subscriptions/acknowledged", subscriptionID: request.id,
                params: ["notifications": wantsTools ? ["toolsListChanged": true] : [:]]))
        guard
            await gateway.connections.listen(
                RandomID.make(prefix: "listen"), on: connectionID,
                .init(request: request, toolsListChanged: wantsTools, frames: continuation))
        else { return }
        for await frame in frames { await send(frame) }
    }
}
