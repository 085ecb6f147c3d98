//! Downloads: http and file URLs, decompressed (gz, xz, bz2, zstd) while the checksums of the
//! downloaded bytes are checked in the same pass; failures classified as LAVA classifies them.
//! The HTTP server is Python's http.server on 127.0.0.1, killed on drop.

mod common;

use basalt::actions::deploy::download::{fetch_blocking, Fetch};
use basalt::job::Compression;
use basalt::run::ErrorType;
use common::TempDir;
use md5::Md5;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Http {
    child: Child,
    port: u16,
}

impl Drop for Http {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &std::path::Path) -> Http {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
        .arg(dir)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "http.server did not start");
        std::thread::sleep(Duration::from_millis(30));
    }
    Http { child, port }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn http_and_file_downloads_decompress_and_verify() {
    let tmp = TempDir::new("download");
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let payload: Vec<u8> = (0..300_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&payload).unwrap();
    let gz = gz.finish().unwrap();
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(&payload).unwrap();
    let xz = xz.finish().unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    bz.write_all(&payload).unwrap();
    let bz = bz.finish().unwrap();
    let zst = zstd::stream::encode_all(&payload[..], 3).unwrap();
    let files = [
        ("image.gz", gz, Some(Compression::Gz)),
        ("image.xz", xz, Some(Compression::Xz)),
        ("image.bz2", bz, Some(Compression::Bz2)),
        ("image.zst", zst, Some(Compression::Zstd)),
        ("image.raw", payload.clone(), None),
    ];
    for (name, data, _) in &files {
        std::fs::write(www.join(name), data).unwrap();
    }
    let http = serve(&www);
    for (name, data, compression) in &files {
        for base in [
            format!("http://127.0.0.1:{}", http.port),
            format!("file://{}", www.display()),
        ] {
            let url = format!("{base}/{name}");
            let f = Fetch {
                url: url.clone(),
                compression: *compression,
                md5sum: Some(hex(&Md5::digest(data))),
                sha256sum: Some(hex(&Sha256::digest(data))),
                ..Fetch::default()
            };
            let dest = tmp.path().join("out");
            let n = fetch_blocking(&f, &dest, Box::new(|_, _| {}))
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(n, data.len() as u64, "{url}");
            assert!(
                std::fs::read(&dest).unwrap() == payload,
                "{url}: content differs"
            );
        }
    }
    // A wrong checksum is the job's error.
    let f = Fetch {
        url: format!("http://127.0.0.1:{}/image.gz", http.port),
        compression: Some(Compression::Gz),
        sha256sum: Some("00".repeat(32)),
        ..Fetch::default()
    };
    let e = fetch_blocking(&f, &tmp.path().join("bad"), Box::new(|_, _| {})).unwrap_err();
    assert_eq!(e.kind, ErrorType::Job);
    assert!(e.message.contains("sha256sum mismatch"), "{}", e.message);
    // Data that is not what the compression says: the job's error too.
    let f = Fetch {
        url: format!("http://127.0.0.1:{}/image.raw", http.port),
        compression: Some(Compression::Xz),
        ..Fetch::default()
    };
    let e = fetch_blocking(&f, &tmp.path().join("bad"), Box::new(|_, _| {})).unwrap_err();
    assert_eq!(e.kind, ErrorType::Job, "{}", e.message);
    // A missing file: 404 is the job's error; nobody listening is the lab's.
    let f = Fetch {
        url: format!("http://127.0.0.1:{}/missing.img", http.port),
        ..Fetch::default()
    };
    let e = fetch_blocking(&f, &tmp.path().join("bad"), Box::new(|_, _| {})).unwrap_err();
    assert_eq!(e.kind, ErrorType::Job);
    assert!(e.message.contains("404"), "{}", e.message);
    let port = http.port;
    drop(http);
    let f = Fetch {
        url: format!("http://127.0.0.1:{port}/image.raw"),
        ..Fetch::default()
    };
    let e = fetch_blocking(&f, &tmp.path().join("bad"), Box::new(|_, _| {})).unwrap_err();
    assert_eq!(e.kind, ErrorType::Infrastructure, "{}", e.message);
}
