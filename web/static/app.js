// The audit page: everything runs here, in the browser, through the policy core compiled to
// WebAssembly (peergate_web.js / peergate_web_bg.wasm, written by `cargo make web`).
import init, { audit, inspect } from "./peergate_web.js";

const $ = (id) => document.getElementById(id);

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function table(headers, rows) {
  const head = element("tr", {}, ...headers.map((h) => element("th", {}, h)));
  const body = rows.map(([cells, classes = []]) =>
    element("tr", {}, ...cells.map((c, i) => element("td", classes[i] ? { class: classes[i] } : {}, String(c)))));
  return element("table", {}, element("thead", {}, head), element("tbody", {}, ...body));
}

function show(run, details) {
  const out = $("output");
  out.replaceChildren();
  const p = run.policy;
  out.append(element("p", {}, `Policy: ${p.origin} (${p.mode}, ${p.trusted_issuers} trusted issuer${p.trusted_issuers === 1 ? "" : "s"}, deny status ${p.deny_status})`));
  run.certificates.forEach((c, index) => {
    const verdict = element("p", { class: `verdict ${c.verdict}`, "data-verdict": c.verdict, "data-reason": c.reason },
      `${c.source}: ${c.verdict.toUpperCase()} — ${c.reason}: ${c.explanation}`);
    out.append(element("h2", {}, c.peer ? c.peer.subject : c.source), verdict);
    out.append(table(["check", "result", "detail"], c.checks.map((k) => [
      [k.check, k.outcome === "fail" ? "FAIL" : k.outcome, k.detail],
      [null, k.outcome, null],
    ])));
    const info = details[index];
    if (info) {
      out.append(element("h2", {}, "Certificate"), table(["field", "value"], [
        [["subject", info.subject]], [["issuer", info.issuer]], [["serial", info.serial]],
        [["not before", info.not_before]], [["not after", `${info.not_after} (${info.days_left} days left${c.peer?.expiring ? ", expiring" : ""})`]],
        [["SANs", info.sans.join(", ")]], [["key", `${info.key.algorithm} ${info.key.bits ?? ""}`.trim()]],
        [["signature", info.signature_algorithm]], [["CA", info.is_ca ? "yes" : "no"]],
        [["SHA-256", info.fingerprint_openssl]], [["SPKI SHA-256", info.spki_sha256]],
      ]));
    }
  });
  out.append(element("details", {}, element("summary", {}, "JSON (as peergate audit --json)"),
    element("pre", { id: "json" }, JSON.stringify(run, null, 2))));
}

function run() {
  const now = Date.now();
  try {
    const result = JSON.parse(audit($("policy").value, $("certificate").value, $("host").value,
      $("method").value, $("path").value, now));
    let details = [];
    try { details = JSON.parse(inspect($("certificate").value, now)); } catch { /* the audit says why */ }
    show(result, details);
  } catch (error) {
    $("output").replaceChildren(element("p", { class: "error", id: "error" }, String(error.message ?? error)));
  }
}

await init();
$("status").textContent = "Paste a policy and a certificate, then Audit.";
$("run").disabled = false;
$("run").addEventListener("click", run);
