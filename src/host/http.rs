//! A minimal HTTP/1.0 file server for one job: devices fetch the overlay tarball from it
//! (`transfer_overlay`). It serves only the files registered with it, by name, read-only;
//! nothing from the request ever becomes a path.
//!
//! Written here rather than with axum/hyper: one GET of a known file per device is all it
//! does, and the worker binary stays small.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The running server; stopped when dropped.
pub struct FileServer {
    addr: SocketAddr,
    files: Arc<Mutex<BTreeMap<String, PathBuf>>>,
    task: JoinHandle<()>,
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FileServer {
    /// Listens on `ip`, any free port.
    pub async fn start(ip: &str) -> std::io::Result<FileServer> {
        let listener = TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let files: Arc<Mutex<BTreeMap<String, PathBuf>>> = Arc::default();
        let served = files.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let files = served.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, files).await;
                });
            }
        });
        Ok(FileServer { addr, files, task })
    }

    /// Serves `path` as `/name`; returns its URL.
    pub fn publish(&self, name: &str, path: PathBuf) -> String {
        if let Ok(mut f) = self.files.lock() {
            f.insert(name.to_string(), path);
        }
        format!("http://{}/{name}", self.addr)
    }
}

async fn serve(
    mut stream: TcpStream,
    files: Arc<Mutex<BTreeMap<String, PathBuf>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 16 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let name = target.trim_start_matches('/');
    let path = files.lock().ok().and_then(|f| f.get(name).cloned());
    match (method, path) {
        ("GET" | "HEAD", Some(path)) => {
            let mut file = tokio::fs::File::open(&path).await?;
            let len = file.metadata().await?.len();
            let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n");
            stream.write_all(head.as_bytes()).await?;
            if method == "GET" {
                tokio::io::copy(&mut file, &mut stream).await?;
            }
        }
        _ => {
            stream
                .write_all(
                    b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await?;
        }
    }
    stream.shutdown().await
}
