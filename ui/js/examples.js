// Ready-to-run examples shown on the Webhooks and Settings pages.
export function curlExample(listen, key) {
  return `curl -sS http://${listen}/v1/events \\\n  -H "Authorization: Bearer ${key}" \\\n  -H "Content-Type: application/json" \\\n  -d '{"type": "message.created", "data": {"text": "Hello from Orki"}}'`;
}
