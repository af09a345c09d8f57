// Verifies deliveries captured by tests/it/signatures.rs with code nobody
// here wrote: the official Standard Webhooks library (npm `standardwebhooks`)
// and, for X-Hub-Signature-256, Node's crypto (createHmac + timingSafeEqual,
// as a receiver would write it). Usage: node verify.mjs CASES.json
// Each case: {scheme: "standard"|"hub", secret, body, headers, expect}.
// Prints one line per case; exits 1 if any case did not come out as expected.
import { readFileSync } from "node:fs";
import { createHmac, timingSafeEqual } from "node:crypto";
import { Webhook } from "standardwebhooks";

function hubValid(token, body, header) {
  const want = Buffer.from(
    "sha256=" + createHmac("sha256", token).update(body).digest("hex"),
  );
  const got = Buffer.from(header ?? "");
  return got.length === want.length && timingSafeEqual(got, want);
}

function standardValid(secret, body, headers) {
  try {
    new Webhook(secret).verify(body, headers);
    return true;
  } catch {
    return false;
  }
}

const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));
let wrong = 0;
for (const [i, c] of cases.entries()) {
  const body = Buffer.from(c.body, "utf8");
  const valid =
    c.scheme === "hub"
      ? hubValid(c.secret, body, c.headers["x-hub-signature-256"])
      : standardValid(c.secret, body, c.headers);
  const ok = valid === c.expect;
  if (!ok) wrong += 1;
  console.log(`${i}: ${c.scheme} ${valid ? "valid" : "invalid"} ${ok ? "as expected" : "NOT AS EXPECTED"}`);
}
process.exit(wrong ? 1 : 0);
