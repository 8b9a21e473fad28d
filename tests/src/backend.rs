//! A plain-HTTP backend that records every request it receives.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A request as the backend saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Request line, e.g. `GET /hello HTTP/1.1`.
    pub request_line: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How the backend answers a request: status and body.
pub type Responder = fn(&Seen) -> (u16, String);

/// The backend, on 127.0.0.1 until the process ends.
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn backend_ok(_: &Seen) -> (u16, String) {
    (200, "backend ok\n".into())
}

/// Answers like `istio/examples-helloworld-v1`: `/hello` says its version and instance.
pub fn helloworld(seen: &Seen) -> (u16, String) {
    let path = seen.request_line.split_whitespace().nth(1).unwrap_or("");
    if path == "/hello" {
        (
            200,
            "Hello version: v1, instance: helloworld-v1-local\n".into(),
        )
    } else {
        (404, "not found\n".into())
    }
}

impl Backend {
    /// Starts it on a free loopback port, answering `200 backend ok`.
    pub fn start() -> Self {
        Self::start_with(backend_ok, 0)
    }

    /// Starts it on `port` (0: any free one) with its own answers.
    pub fn start_with(respond: Responder, port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind backend");
        let addr = listener.local_addr().expect("backend address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = Arc::clone(&record);
                std::thread::spawn(move || serve(stream, &record, respond));
            }
        });
        Self { addr, seen }
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("backend lock").clone()
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.seen.lock().expect("backend lock").len()
    }
}

fn serve(stream: TcpStream, record: &Mutex<Vec<Seen>>, respond: Responder) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    // Lines are read as bytes: a header may carry bytes that are not UTF-8, and a backend
    // that dropped the connection on them would pass for a gateway failure.
    let read_line = |reader: &mut BufReader<TcpStream>| -> Option<String> {
        let mut raw = Vec::new();
        match reader.read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(String::from_utf8_lossy(&raw).into_owned()),
        }
    };
    loop {
        let Some(request_line) = read_line(&mut reader) else {
            return;
        };
        let mut headers = Vec::new();
        loop {
            let Some(line) = read_line(&mut reader) else {
                return;
            };
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let seen = Seen {
            request_line: request_line.trim_end().to_owned(),
            headers,
        };
        let (status, body) = respond(&seen);
        record.lock().expect("backend lock").push(seen);
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
