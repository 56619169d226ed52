// Runs the graphql-http server audits (GraphQL over HTTP spec) against a
// server: `node audit.mjs http://127.0.0.1:PORT/graphql`. Prints one JSON
// line per audit that did not pass ({status, id, name, reason}), then a
// summary line {ok, notice, warn, error}; exits 0 either way (the Rust test judges).
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
const summary = { ok: 0, notice: 0, warn: 0, error: 0 };
for (const audit of serverAudits({ url })) {
  const result = await audit.fn();
  summary[result.status] += 1;
  if (result.status !== 'ok') {
    console.log(JSON.stringify({ status: result.status, id: result.id, name: result.name, reason: result.reason }));
  }
}
console.log(JSON.stringify({ summary }));
