// A plain Node.js HTTP server: Ember gives it a port in $PORT and proxies requests to it.
const http = require("http");

const port = parseInt(process.env.PORT || "8000", 10);
const greeting = process.env.GREETING || "Hello";

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    const url = new URL(req.url, "http://localhost");
    if (url.pathname === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("ok");
      return;
    }
    if (url.pathname === "/invoke" && req.method === "POST") {
      // Direct and async invocations (ember invoke node-hello) arrive here.
      const event = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : null;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ greeting, event }));
      return;
    }
    const name = url.searchParams.get("name") || "world";
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ message: `${greeting}, ${name}!`, path: url.pathname,
                             node: process.version }));
  });
});

server.listen(port, "127.0.0.1", () => console.log(`node-hello listening on ${port}`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
