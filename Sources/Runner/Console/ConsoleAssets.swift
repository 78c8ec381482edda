/// The console's page, script and style, compiled into the binary: nothing to install or build
/// beside it, and nothing served that the binary did not ship.
///
/// The page holds no inline script, style or event-handler attribute (the CSP forbids them), and
/// the script builds every element with `textContent`, never `innerHTML`: a tool name or argument
/// holding markup is shown as text.
enum ConsoleAssets {
    /// `/ui`.
    static let page = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Leasehold console</title>
        <link rel="stylesheet" href="/ui/static/console.css">
        <link rel="icon" href="/ui/static/icon.svg" type="image/svg+xml">
        <script src="/ui/static/console.js" defer></script>
        </head>
        <body>
        <header>
          <h1>Leasehold console</h1>
          <nav id="nav" hidden>
            <button type="button" data-view="approvals" id="nav-approvals">Approvals <span id="pending-count" class="badge"></span></button>
            <button type="button" data-view="sessions" id="nav-sessions">Live sessions</button>
            <button type="button" data-view="audit" id="nav-audit">Audit</button>
            <button type="button" data-view="policy" id="nav-policy">Policy</button>
          </nav>
          <span id="who"></span>
          <button type="button" id="signout" hidden>Sign out</button>
        </header>
        <main>
          <section id="signin" hidden>
            <h2>Sign in</h2>
            <form id="signin-form">
              <label for="signin-key">Operator key or tenant admin key</label>
              <input type="password" id="signin-key" name="key" autocomplete="off" required>
              <button type="submit" id="signin-submit">Sign in</button>
            </form>
            <p id="signin-error" class="error"></p>
          </section>
          <section id="view-approvals" hidden>
            <h2>Pending approvals</h2>
            <p class="hint">Refreshed every two seconds. Arguments are shown whole; scroll long values.</p>
            <div id="approvals-pending"></div>
            <h2>Decided</h2>
            <table id="approvals-history">
              <thead><tr><th>Decided</th><th>Status</th><th>By</th><th>Tenant</th><th>Session</th><th>Tool</th><th>Uses left</th><th>Expires</th><th>Reason</th></tr></thead>
              <tbody></tbody>
            </table>
          </section>
          <section id="view-sessions" hidden>
            <h2>Live sessions</h2>
            <p class="hint">Sessions not revoked whose lease has not run out. Refreshed every three seconds.</p>
            <table id="sessions-table">
              <thead><tr><th>Session</th><th>Tenant</th><th>Actor</th><th>Workspace</th><th>Scope</th><th>Visible tools</th><th>Lease</th><th>Connections</th><th>Warm workers</th><th>Actions</th></tr></thead>
              <tbody></tbody>
            </table>
          </section>
          <section id="view-audit" hidden>
            <h2>Audit explorer</h2>
            <p id="audit-chain" class="chain"></p>
            <form id="audit-form" class="filters">
              <label>Since <input type="datetime-local" name="since" step="1"></label>
              <label>Until <input type="datetime-local" name="until" step="1"></label>
              <label>Tenant <input name="tenant_id" autocomplete="off"></label>
              <label>Session <input name="session_id" autocomplete="off"></label>
              <label>Actor <input name="actor_id" autocomplete="off"></label>
              <label>Tool <input name="tool" autocomplete="off"></label>
              <label>Event <input name="event" autocomplete="off" list="audit-events"></label>
              <label>Decision <input name="decision" autocomplete="off"></label>
              <label>Refusal code <input name="code" autocomplete="off"></label>
              <label>Limit <input name="limit" type="number" min="1" max="10000" value="200"></label>
              <button type="submit" id="audit-apply">Apply</button>
              <a id="audit-export" href="/ui/api/audit/export" download="leasehold-audit.jsonl">Export JSON lines</a>
            </form>
            <datalist id="audit-events">
              <option value="call.intent"><option value="call.outcome"><option value="request.refused">
              <option value="approval.requested"><option value="approval.granted"><option value="approval.denied">
              <option value="session.created"><option value="session.patched"><option value="session.revoked">
              <option value="lease.revoked"><option value="console.signed_in"><option value="console.signin.refused">
            </datalist>
            <table id="audit-table">
              <thead><tr><th>Seq</th><th>Time</th><th>Event</th><th>Tenant</th><th>Actor</th><th>Session</th><th>Tool</th><th>Decision</th><th>Code</th></tr></thead>
              <tbody></tbody>
            </table>
            <p><button type="button" id="audit-more" hidden>Load more</button> <span id="audit-count"></span></p>
            <h3>Record</h3>
            <pre id="audit-detail" class="scroll">Select a record.</pre>
          </section>
          <section id="view-policy" hidden>
            <h2>Policy</h2>
            <p id="policy-version"></p>
            <div id="policy-status"></div>
            <h3>Explain a tool</h3>
            <form id="explain-form" class="filters">
              <label>Tool <input name="tool" required autocomplete="off"></label>
              <label>Tenant <input name="tenant_id" autocomplete="off"></label>
              <button type="submit" id="explain-submit">Explain</button>
            </form>
            <pre id="explain-output" class="scroll"></pre>
            <h3>Tiers</h3>
            <table id="tiers-table">
              <thead><tr><th>Tier</th><th>Isolation</th><th>Approval</th><th>Network</th><th>Cache</th><th>Seccomp</th></tr></thead>
              <tbody></tbody>
            </table>
            <h3>Tools and their tiers</h3>
            <table id="tools-table">
              <thead><tr><th>Tool</th><th>Server</th><th>Tier</th></tr></thead>
              <tbody></tbody>
            </table>
          </section>
          <p id="status" role="status"></p>
        </main>
        </body>
        </html>
        """#

    /// `/ui/static/console.js`.
    static let script = #"""
        "use strict";
        // Every server value reaches the page through textContent (el/text below), never innerHTML.
        const state = { csrf: null, me: null, view: "approvals", timer: null, auditAfter: 0 };

        function el(tag, attrs, ...children) {
          const node = document.createElement(tag);
          for (const [name, value] of Object.entries(attrs || {})) {
            if (name === "class") node.className = value;
            else if (name.startsWith("data-")) node.setAttribute(name, value);
            else node[name] = value;
          }
          for (const child of children) {
            if (child === null || child === undefined) continue;
            node.append(child instanceof Node ? child : document.createTextNode(String(child)));
          }
          return node;
        }

        function show(message, isError) {
          const status = document.getElementById("status");
          status.textContent = message || "";
          status.className = isError ? "error" : "";
        }

        async function api(method, path, body) {
          const headers = { "Accept": "application/json" };
          if (method !== "GET") {
            headers["X-CSRF-Token"] = state.csrf || "";
            headers["Content-Type"] = "application/json";
          }
          const response = await fetch(path, {
            method, headers, credentials: "same-origin",
            body: method === "GET" ? undefined : JSON.stringify(body || {}),
          });
          const data = await response.json().catch(() => ({}));
          if (response.status === 401 && path !== "/ui/api/signin") { signedOut(); }
          if (!response.ok) {
            const error = (data && data.error) || { code: "http_" + response.status, message: response.statusText };
            throw new Error(error.code + ": " + error.message);
          }
          return data;
        }

        function when(text) {
          if (!text) return "";
          const date = new Date(text);
          return isNaN(date) ? String(text) : date.toISOString().replace(".000Z", "Z");
        }

        function signedOut() {
          state.csrf = null;
          state.me = null;
          clearInterval(state.timer);
          document.getElementById("nav").hidden = true;
          document.getElementById("signout").hidden = true;
          document.getElementById("who").textContent = "";
          for (const section of document.querySelectorAll("main > section")) section.hidden = true;
          document.getElementById("signin").hidden = false;
        }

        function signedIn(me) {
          state.me = me;
          state.csrf = me.csrf_token;
          document.getElementById("signin").hidden = true;
          document.getElementById("nav").hidden = false;
          document.getElementById("signout").hidden = false;
          document.getElementById("who").textContent = "Signed in as " + me.principal;
          const view = (location.hash || "#approvals").slice(1);
          select(["approvals", "sessions", "audit", "policy"].includes(view) ? view : "approvals");
        }

        function select(view) {
          state.view = view;
          for (const name of ["approvals", "sessions", "audit", "policy"]) {
            document.getElementById("view-" + name).hidden = name !== view;
            document.getElementById("nav-" + name).classList.toggle("current", name === view);
          }
          if (location.hash !== "#" + view) history.replaceState(null, "", "#" + view);
          clearInterval(state.timer);
          refresh();
          if (view === "approvals") state.timer = setInterval(refresh, 2000);
          if (view === "sessions") state.timer = setInterval(refresh, 3000);
        }

        function refresh() {
          const run = { approvals: loadApprovals, sessions: loadSessions, audit: loadAudit, policy: loadPolicy }[state.view];
          run().catch((error) => show(error.message, true));
        }

        // Approvals -------------------------------------------------------------------------------

        function pretty(text) {
          if (text === null || text === undefined) return "(arguments not kept for this approval)";
          try { return JSON.stringify(JSON.parse(text), null, 2); } catch (error) { return text; }
        }

        function approvalCard(view) {
          const a = view.approval;
          const fields = [
            ["Tenant", a.tenant_id], ["Session", a.session_id], ["Actor", a.actor_id], ["Workspace", a.workspace_id],
            ["Tool", a.tool], ["Tier", view.tier || "(none: the tool would be denied)"],
            ["Policy version in force", view.policy_version], ["Asked", when(a.created_at)],
            ["Expires", a.expires_at ? when(a.expires_at) : "when granted: the TTL below"],
            ["Arguments digest", a.arguments_digest], ["SHA-256 of the text shown", a.arguments_sha256 || ""],
          ];
          const list = el("dl");
          for (const [name, value] of fields) list.append(el("dt", {}, name), el("dd", {}, value));
          const size = a.arguments === null || a.arguments === undefined ? 0 : new TextEncoder().encode(a.arguments).length;
          const ttl = el("input", { type: "number", min: 1, max: 86400, value: 300, className: "ttl" });
          const uses = el("input", { type: "number", min: 1, max: 1000, value: 1, className: "uses" });
          const reason = el("input", { type: "text", placeholder: "reason", className: "reason", maxLength: 1024 });
          const grant = el("button", { type: "button", className: "grant" }, "Grant");
          const deny = el("button", { type: "button", className: "deny" }, "Deny");
          grant.addEventListener("click", () => decide(a.id, "grant", { ttl_seconds: Number(ttl.value), uses: Number(uses.value) }));
          deny.addEventListener("click", () => decide(a.id, "deny", { reason: reason.value }));
          return el("article", { class: "approval", "data-id": a.id },
            el("h3", {}, a.tool, " ", el("span", { class: "muted" }, a.id)),
            list,
            el("p", { class: "muted" }, "Arguments, whole (" + size + " bytes):"),
            el("pre", { class: "scroll args" }, pretty(a.arguments)),
            el("div", { class: "decide" },
              el("label", {}, "TTL (s) ", ttl), el("label", {}, "Uses ", uses), grant,
              el("label", {}, "Reason ", reason), deny));
        }

        async function decide(id, action, body) {
          try {
            await api("POST", "/ui/api/approvals/" + encodeURIComponent(id) + "/" + action, body);
            show("Approval " + id + ": " + (action === "grant" ? "granted" : "denied"));
          } catch (error) { show(error.message, true); }
          await loadApprovals().catch((error) => show(error.message, true));
        }

        async function loadApprovals() {
          const pending = (await api("GET", "/ui/api/approvals?view=pending")).approvals;
          document.getElementById("pending-count").textContent = pending.length ? String(pending.length) : "";
          const box = document.getElementById("approvals-pending");
          const wanted = new Set(pending.map((view) => view.approval.id));
          for (const card of [...box.querySelectorAll("article.approval")]) {
            if (!wanted.has(card.getAttribute("data-id"))) card.remove();
          }
          const present = new Set([...box.querySelectorAll("article.approval")].map((card) => card.getAttribute("data-id")));
          for (const view of pending) if (!present.has(view.approval.id)) box.append(approvalCard(view));
          let empty = box.querySelector("p.empty");
          if (!pending.length && !empty) box.append(el("p", { class: "empty muted" }, "Nothing is waiting."));
          if (pending.length && empty) empty.remove();
          const history = (await api("GET", "/ui/api/approvals?view=history")).approvals;
          const body = document.querySelector("#approvals-history tbody");
          body.replaceChildren(...history.map((view) => {
            const a = view.approval;
            return el("tr", { class: "status-" + a.status, "data-id": a.id },
              el("td", {}, when(a.decided_at)), el("td", {}, a.status), el("td", {}, a.decided_by || ""),
              el("td", {}, a.tenant_id), el("td", {}, a.session_id), el("td", {}, a.tool),
              el("td", {}, a.uses_left === undefined ? "" : String(a.uses_left)), el("td", {}, when(a.expires_at)),
              el("td", {}, a.deny_reason || ""));
          }));
        }

        // Sessions --------------------------------------------------------------------------------

        function patterns(text) {
          const list = text.split(",").map((item) => item.trim()).filter((item) => item.length);
          return list.length ? list : null;
        }

        function sessionRow(view) {
          const s = view.session;
          const scope = el("div", { class: "scope" },
            el("div", {}, "universe: " + (s.server_id ? "server " + s.server_id : s.bundle_id ? "bundle " + s.bundle_id : "gateway")),
            el("div", {}, "allow: " + (s.allowed_tool_names ? s.allowed_tool_names.join(", ") : "(all)")),
            el("div", {}, "deny: " + (s.denied_tool_names ? s.denied_tool_names.join(", ") : "(none)")));
          const allow = el("input", { type: "text", className: "allow", placeholder: "allow patterns, comma-separated",
            value: (s.allowed_tool_names || []).join(", ") });
          const deny = el("input", { type: "text", className: "deny-patterns", placeholder: "deny patterns, comma-separated",
            value: (s.denied_tool_names || []).join(", ") });
          const apply = el("button", { type: "button", className: "apply-scope" }, "Apply scope");
          apply.addEventListener("click", () => change(s.id, "/scope",
            { allowed_tool_names: patterns(allow.value), denied_tool_names: patterns(deny.value) }));
          const revokeLease = el("button", { type: "button", className: "revoke-lease" }, "Revoke lease");
          revokeLease.addEventListener("click", () => change(s.id, "/lease/revoke", {}));
          const revoke = el("button", { type: "button", className: "revoke-session danger" }, "Revoke session");
          revoke.addEventListener("click", () => change(s.id, "/revoke", {}));
          const lease = (view.lease_live ? "live" : (s.lease.revoked_at ? "revoked" : "ended")) + ", ends " + when(s.lease.expires_at);
          return el("tr", { "data-id": s.id },
            el("td", {}, s.id), el("td", {}, s.tenant_id), el("td", {}, s.actor_id), el("td", {}, s.workspace_id),
            el("td", {}, scope), el("td", { class: "visible-tools" }, view.visible_tools === undefined ? "?" : String(view.visible_tools)),
            el("td", { class: "lease" }, lease), el("td", { class: "connections" }, String(view.connections)),
            el("td", { class: "warm-workers" }, String(view.warm_workers)),
            el("td", { class: "actions" }, allow, deny, apply, revokeLease, revoke));
        }

        async function change(id, suffix, body) {
          try {
            await api("POST", "/ui/api/sessions/" + encodeURIComponent(id) + suffix, body);
            show("Session " + id + " updated");
          } catch (error) { show(error.message, true); }
          await loadSessions(true).catch((error) => show(error.message, true));
        }

        async function loadSessions(force) {
          const body = document.querySelector("#sessions-table tbody");
          // Do not redraw under someone typing a scope.
          if (!force && body.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;
          const sessions = (await api("GET", "/ui/api/sessions")).sessions;
          body.replaceChildren(...sessions.map(sessionRow));
          if (!sessions.length) body.append(el("tr", {}, el("td", { colSpan: 10, class: "muted" }, "No live session.")));
        }

        // Audit -----------------------------------------------------------------------------------

        function auditQuery(after) {
          const form = document.getElementById("audit-form");
          const query = new URLSearchParams();
          for (const input of form.querySelectorAll("input")) {
            if (!input.value) continue;
            const value = input.type === "datetime-local" ? new Date(input.value).toISOString() : input.value;
            query.set(input.name, value);
          }
          if (after) query.set("after_seq", String(after));
          return query;
        }

        function auditRow(entry) {
          const e = entry.event || {};
          const row = el("tr", { "data-seq": String(entry.seq) },
            el("td", {}, String(entry.seq)), el("td", {}, e.time || ""), el("td", {}, e.event || ""),
            el("td", {}, e.tenant || ""), el("td", {}, e.actor || ""), el("td", {}, e.session || ""),
            el("td", {}, e.tool || ""), el("td", {}, e.decision || ""), el("td", {}, e.code || ""));
          row.addEventListener("click", () => {
            document.getElementById("audit-detail").textContent = JSON.stringify(entry, null, 2);
          });
          return row;
        }

        async function loadAudit(more) {
          const after = more ? state.auditAfter : 0;
          const query = auditQuery(after);
          const exportQuery = auditQuery(0);
          exportQuery.delete("limit");
          document.getElementById("audit-export").href = "/ui/api/audit/export?" + exportQuery.toString();
          const page = await api("GET", "/ui/api/audit?" + query.toString());
          const body = document.querySelector("#audit-table tbody");
          const rows = page.records.map(auditRow);
          if (more) body.append(...rows); else body.replaceChildren(...rows);
          state.auditAfter = page.scanned_through;
          document.getElementById("audit-more").hidden = !page.more;
          document.getElementById("audit-count").textContent = body.children.length + " record(s) shown";
          if (!more) {
            const chain = await api("GET", "/ui/api/audit/verify");
            const parts = ["Chain: " + chain.status];
            if (chain.records !== undefined) parts.push(chain.records + " records, head " + chain.head);
            if (chain.broken_at !== undefined) parts.push("breaks at record " + chain.broken_at + ": " + chain.reason);
            if (chain.checkpoints !== undefined) parts.push(chain.checkpoints + " signed checkpoint(s), last covers record " + chain.last_signed_seq);
            for (const failure of chain.checkpoint_failures || []) parts.push(failure);
            const line = document.getElementById("audit-chain");
            line.textContent = parts.join("; ");
            line.className = "chain " + (chain.status === "ok" ? "ok" : "error");
          }
        }

        // Policy ----------------------------------------------------------------------------------

        async function loadPolicy() {
          const policy = await api("GET", "/ui/api/policy");
          document.getElementById("policy-version").textContent =
            "Version in force: " + policy.version + (policy.tenant ? " (tiers as tenant " + policy.tenant + " sees them)" : "");
          const status = document.getElementById("policy-status");
          status.replaceChildren();
          if (policy.status) {
            status.append(el("p", {}, "Loaded " + when(policy.status.loaded_at)));
            const rejection = policy.status.last_rejection;
            if (rejection) {
              status.append(el("p", { class: "error" }, "Last reload rejected at " + when(rejection.at) + "; the policy above stays in force:"),
                el("pre", { class: "scroll error" }, rejection.errors.join("\n")));
            } else {
              status.append(el("p", { class: "ok" }, "No reload has been rejected."));
            }
          }
          const tiers = document.querySelector("#tiers-table tbody");
          tiers.replaceChildren(...Object.keys(policy.tiers).sort().map((name) => {
            const t = policy.tiers[name];
            const approval = t.approval && t.approval.required ? "required" : "none";
            return el("tr", {}, el("td", {}, name), el("td", {}, t.isolation), el("td", {}, approval),
              el("td", {}, t.network), el("td", {}, t.cacheable ? "yes" : "no"), el("td", {}, t.seccomp_profile || ""));
          }));
          const tools = document.querySelector("#tools-table tbody");
          tools.replaceChildren(...policy.tools.map((t) => {
            const row = el("tr", {}, el("td", {}, t.tool), el("td", {}, t.server), el("td", {}, t.tier || "(none: denied)"));
            row.addEventListener("click", () => { document.querySelector("#explain-form input[name=tool]").value = t.tool; explain(); });
            return row;
          }));
        }

        async function explain() {
          const form = document.getElementById("explain-form");
          const query = new URLSearchParams();
          for (const input of form.querySelectorAll("input")) if (input.value) query.set(input.name, input.value);
          try {
            const result = await api("GET", "/ui/api/policy/explain?" + query.toString());
            document.getElementById("explain-output").textContent = result.lines.join("\n");
          } catch (error) { document.getElementById("explain-output").textContent = error.message; }
        }

        // Start -----------------------------------------------------------------------------------

        document.addEventListener("DOMContentLoaded", () => {
          document.getElementById("signin-form").addEventListener("submit", async (event) => {
            event.preventDefault();
            const key = document.getElementById("signin-key");
            try {
              const me = await api("POST", "/ui/api/signin", { key: key.value });
              key.value = "";
              document.getElementById("signin-error").textContent = "";
              signedIn(me);
            } catch (error) { document.getElementById("signin-error").textContent = error.message; }
          });
          document.getElementById("signout").addEventListener("click", async () => {
            await api("POST", "/ui/api/signout", {}).catch(() => {});
            signedOut();
          });
          for (const button of document.querySelectorAll("#nav button")) {
            button.addEventListener("click", () => select(button.getAttribute("data-view")));
          }
          document.getElementById("audit-form").addEventListener("submit", (event) => {
            event.preventDefault();
            loadAudit(false).catch((error) => show(error.message, true));
          });
          document.getElementById("audit-more").addEventListener("click", () => loadAudit(true).catch((error) => show(error.message, true)));
          document.getElementById("explain-form").addEventListener("submit", (event) => { event.preventDefault(); explain(); });
          api("GET", "/ui/api/me").then(signedIn).catch(signedOut);
        });
        """#

    /// `/ui/static/icon.svg`: the browser asks for an icon; without one every page load logs a 404.
    static let icon = #"""
        <svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#0b5cab"/><path d="M5 3v10h6" stroke="#fff" stroke-width="2" fill="none"/></svg>
        """#

    /// `/ui/static/console.css`.
    static let style = #"""
        :root { --fg: #1d232a; --muted: #5f6b76; --line: #d5dbe1; --accent: #0b5cab; --bad: #b3261e; --good: #1e7b34; }
        * { box-sizing: border-box; }
        [hidden] { display: none !important; }
        body { margin: 0; font: 14px/1.45 system-ui, sans-serif; color: var(--fg); background: #f6f8fa; }
        header { display: flex; gap: 1rem; align-items: center; padding: .6rem 1rem; background: #fff; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
        header h1 { font-size: 1.1rem; margin: 0 1rem 0 0; }
        nav { display: flex; gap: .3rem; }
        nav button.current { background: var(--accent); color: #fff; border-color: var(--accent); }
        #who { margin-left: auto; color: var(--muted); }
        main { padding: 1rem; max-width: 1400px; }
        h2 { font-size: 1.05rem; margin: 1.2rem 0 .5rem; }
        h3 { font-size: .95rem; margin: .8rem 0 .4rem; }
        button { font: inherit; padding: .25rem .7rem; border: 1px solid var(--line); background: #fff; border-radius: 4px; cursor: pointer; }
        button.grant { border-color: var(--good); color: var(--good); }
        button.deny, button.danger { border-color: var(--bad); color: var(--bad); }
        input { font: inherit; padding: .2rem .4rem; border: 1px solid var(--line); border-radius: 4px; }
        input.ttl, input.uses { width: 6rem; }
        table { border-collapse: collapse; width: 100%; background: #fff; }
        th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; overflow-wrap: anywhere; }
        th { background: #eef1f4; font-weight: 600; }
        #audit-table tbody tr, #tools-table tbody tr { cursor: pointer; }
        #audit-table tbody tr:hover, #tools-table tbody tr:hover { background: #eef5fc; }
        .approval { background: #fff; border: 1px solid var(--line); border-left: 4px solid #c77700; border-radius: 4px; padding: .6rem 1rem; margin-bottom: 1rem; }
        .approval dl { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: .4rem 0; }
        .approval dt { color: var(--muted); }
        .approval dd { margin: 0; font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
        .decide { display: flex; gap: .6rem; align-items: center; flex-wrap: wrap; }
        pre.scroll { max-height: 24rem; overflow: auto; white-space: pre; background: #0f1720; color: #e6edf3; padding: .6rem; border-radius: 4px; font-size: 12.5px; }
        .filters { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: end; margin-bottom: .8rem; }
        .filters label { display: flex; flex-direction: column; font-size: .85rem; color: var(--muted); }
        .actions input { display: block; width: 16rem; margin-bottom: .2rem; }
        .actions button { margin: .1rem .2rem .1rem 0; }
        .scope div { white-space: nowrap; }
        .muted, .hint { color: var(--muted); }
        .error { color: var(--bad); }
        .ok { color: var(--good); }
        .chain { font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
        .badge { background: #c77700; color: #fff; border-radius: 8px; padding: 0 .4rem; font-size: .8rem; }
        .badge:empty { display: none; }
        #signin form { display: flex; flex-direction: column; gap: .5rem; max-width: 28rem; }
        """#
}
