//! WebSocket through the gateway with real peers: a `websockets` echo server
//! (Debian's /usr/bin/python3 + python3-websockets) as the upstream, and a
//! `websockets` client speaking wss:// with a client certificate (mtls = "require").
//! docs/gateway.md: "WebSocket (Upgrade) passes through on HTTP/1.1" and a reload
//! drops no open WebSocket.
mod support;
use support::*;

use std::time::Duration;

/// Echo server: prints its port, answers every message with "echo:" + message.
const WS_SERVER_PY: &str = r#"
import asyncio, websockets

async def echo(ws, path=None):
    async for message in ws:
        await ws.send("echo:" + message)

async def main():
    async with websockets.serve(echo, "127.0.0.1", 0) as server:
        print([s.getsockname()[1] for s in server.sockets][0], flush=True)
        await asyncio.Future()

asyncio.run(main())
"#;

/// Client: `URL CA CERT KEY`; prints "open" once connected, then for each stdin
/// line sends it and prints "got REPLY"; prints "closed CODE" if the server closes.
const WS_CLIENT_PY: &str = r#"
import asyncio, ssl, sys, websockets

url, ca, crt, key = sys.argv[1:5]

async def main():
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(crt, key)
    loop = asyncio.get_running_loop()
    try:
        async with websockets.connect(url, ssl=ctx, ping_interval=None, open_timeout=10) as ws:
            print("open", flush=True)
            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line:
                    break
                await ws.send(line.strip())
                reply = await asyncio.wait_for(ws.recv(), 10)
                print("got " + reply, flush=True)
    except websockets.ConnectionClosed as e:
        print("closed %s" % e, flush=True)
        sys.exit(3)
    except Exception as e:
        print("error %r" % e, flush=True)
        sys.exit(4)

asyncio.run(main())
"#;

fn config(https: u16, ws_port: u16, hsts: u64) -> String {
    format!(
        "[listen]\nhttps = \"127.0.0.1:{https}\"\n\n\
         [[site]]\nhosts = [\"localhost\"]\ncertificate = {{ internal_ca = true }}\nmtls = \"require\"\n\
         trust = {{ internal_ca = true }}\nupstream = \"ws\"\nhsts_max_age = {hsts}\n\n\
         [[upstream]]\nname = \"ws\"\nservers = [\"http://127.0.0.1:{ws_port}\"]\n"
    )
}

fn client(env: &Env, gw: &Gateway, cert: &Cert) -> Proc {
    let script = env.write("ws_client.py", WS_CLIENT_PY);
    let mut c = std::process::Command::new(PYTHON);
    c.arg("-u")
        .arg(&script)
        .arg(format!("wss://localhost:{}/", gw.https))
        .arg(env.root())
        .arg(&cert.crt)
        .arg(&cert.key);
    let p = Proc::spawn_with_stdin(c, "websockets client");
    p.wait_stdout(Duration::from_secs(15), |l| l == "open" || l.starts_with("error") || l.starts_with("closed"))
        .unwrap_or_else(|| panic!("websocket client did not connect\n{}\n{}", p.dump(), gw.proc.dump()));
    assert!(p.stdout_lines().iter().any(|l| l == "open"), "websocket not opened\n{}\n{}", p.dump(), gw.proc.dump());
    p
}

/// Sends one message on the open socket and waits for its echo.
#[track_caller]
fn exchange(p: &mut Proc, gw: &Gateway, msg: &str) {
    let before = p.stdout_len();
    p.send_line(msg);
    let want = format!("got echo:{msg}");
    let got = p.wait_stdout_after(before, Duration::from_secs(10), |l| {
        l.starts_with("got ") || l.starts_with("closed") || l.starts_with("error")
    });
    assert_eq!(got.as_deref(), Some(want.as_str()), "no echo of {msg:?}\n{}\n{}", p.dump(), gw.proc.dump());
}

#[test]
fn websocket_echo_through_the_gateway_with_a_client_certificate() {
    require_python_module("websockets");
    let env = Env::new();
    let (_server, port) = python_server(&env, "ws_server.py", WS_SERVER_PY, &[], "websockets echo server");
    let ws_port: u16 = port.parse().expect("echo server port");
    let alice = env.issue("client", "alice", &[]);

    let https = free_port();
    let gw = Gateway::start(&env, "gw.toml", https, &config(https, ws_port, 100));
    let mut c = client(&env, &gw, &alice);
    for msg in ["hello", "second message", "third ✓"] {
        exchange(&mut c, &gw, msg);
    }
    c.close_stdin();
    let st = c.wait_exit(Duration::from_secs(10)).expect("client did not exit after stdin closed");
    assert!(st.success(), "client exit {st}\n{}", c.dump());

    // The upgrade went through on HTTP/1.1 with the verified client certificate.
    let line = gw
        .proc
        .wait_json(Duration::from_secs(5), |v| v["event"] == "request" && v["status"] == 101)
        .unwrap_or_else(|| panic!("no access line with status 101\n{}", gw.proc.dump()));
    assert_eq!(line["protocol"], "HTTP/1.1", "{line}");
    assert_eq!(line["client_verify"], "verified", "{line}");
    assert_eq!(line["client_subject"], "CN=alice", "{line}");
}

#[test]
fn websocket_stays_open_across_a_config_reload() {
    require_python_module("websockets");
    let env = Env::new();
    let (_server, port) = python_server(&env, "ws_server.py", WS_SERVER_PY, &[], "websockets echo server");
    let ws_port: u16 = port.parse().expect("echo server port");
    let bob = env.issue("client", "bob", &[]);

    let https = free_port();
    let gw = Gateway::start(&env, "gw.toml", https, &config(https, ws_port, 100));
    let before = gw.curl_cert("localhost", "/", &bob, &[]);
    assert_eq!(before.header("strict-transport-security"), Some("max-age=100"), "{before:?}");

    let mut c = client(&env, &gw, &bob);
    exchange(&mut c, &gw, "before reload");

    // Change the config file; the gateway checks it every second. The reload
    // really happened once new requests see the new HSTS value.
    gw.rewrite_config(&config(https, ws_port, 200));
    let mut last = None;
    let reloaded = poll_until(Duration::from_secs(5), || {
        let r = gw.curl_cert("localhost", "/", &bob, &[]);
        let ok = r.header("strict-transport-security") == Some("max-age=200");
        last = Some(r);
        ok
    });
    assert!(reloaded.is_some(), "config change not applied: {last:?}\n{}", gw.proc.dump());

    // The socket opened before the reload still carries messages both ways.
    assert!(c.try_exit().is_none(), "websocket client ended during the reload\n{}\n{}", c.dump(), gw.proc.dump());
    exchange(&mut c, &gw, "after reload");
    exchange(&mut c, &gw, "after reload 2");

    // And a new socket after the reload works too.
    let mut c2 = client(&env, &gw, &bob);
    exchange(&mut c2, &gw, "new socket");
}
