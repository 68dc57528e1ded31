// The socket floor's server (bench/socket-floor.ts): the Mandos exchange's
// shape on node:net, without TLS or a registry. Per connection: read the
// 3-byte version line, write a ClientHello's weight, read a server flight's,
// then, `hold` ms later, write a secret's weight and close.
//
//   node dist/bench/socket-floor-server.js PORT HOLD_MS

import { createServer, type Socket } from "node:net";

const HELLO = Buffer.alloc(250, 1);
const SECRET = Buffer.alloc(600, 2);
const LINE = 3;
const FLIGHT = 700;
const port = Number(process.argv[2]);
const holdMs = Number(process.argv[3] ?? 0);

function serve(socket: Socket): void {
  socket.setNoDelay(true);
  let stage = 0;
  let got = 0;
  const finish = (): void => {
    socket.end(SECRET);
  };
  socket.on("data", (chunk: Buffer) => {
    got += chunk.length;
    if (stage === 0 && got >= LINE) {
      stage = 1;
      got -= LINE;
      socket.write(HELLO);
    }
    if (stage === 1 && got >= FLIGHT) {
      stage = 2;
      if (holdMs > 0) setTimeout(finish, holdMs);
      else finish();
    }
  });
  socket.on("error", () => socket.destroy());
}

createServer(serve).listen(port, "::1");
