// Subscribes with the real `graphql-ws` client and prints one JSON line per
// event on stdout, "ERROR <json>" on an error, "COMPLETE" on completion.
// Usage: node subscribe.mjs <ws-url> <token> <query> [variables-json]
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, token, query, variables = '{}'] = process.argv.slice(2);
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: token ? { Authorization: `Bearer ${token}` } : {},
  retryAttempts: 0,
});
client.subscribe(
  { query, variables: JSON.parse(variables) },
  {
    next: (value) => console.log(JSON.stringify(value)),
    error: (error) => {
      console.log(`ERROR ${JSON.stringify(error?.message ?? error)}`);
      process.exit(2);
    },
    complete: () => {
      console.log('COMPLETE');
      process.exit(0);
    },
  },
);
