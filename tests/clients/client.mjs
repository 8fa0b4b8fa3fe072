// A legacy integration written with Node's built-in fetch: one request, the answer as JSON.
//
//   NODE_EXTRA_CA_CERTS=BUNDLE node client.mjs METHOD URL [-H 'Name: value']... [-d BODY]
//
// Every host name resolves to 127.0.0.1 (the test's stand-in DNS). Redirects are followed as
// fetch does by default. Prints {"status": N, "body": "..."} or {"error": "..."}.
import dns from 'node:dns';

dns.lookup = (host, options, callback) => {
  if (typeof options === 'function') [callback, options] = [options, {}];
  if (options && options.all) return callback(null, [{ address: '127.0.0.1', family: 4 }]);
  return callback(null, '127.0.0.1', 4);
};

const [method, url, ...rest] = process.argv.slice(2);
const headers = {};
let body;
for (let i = 0; i < rest.length; i += 2) {
  if (rest[i] === '-H') {
    const [name, value] = rest[i + 1].split(/: (.*)/s);
    headers[name] = value;
  } else if (rest[i] === '-d') {
    body = rest[i + 1];
  }
}
try {
  const response = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(10000) });
  console.log(JSON.stringify({ status: response.status, body: await response.text() }));
} catch (e) {
  console.log(JSON.stringify({ error: `${e}: ${e.cause ?? ''}` }));
}
