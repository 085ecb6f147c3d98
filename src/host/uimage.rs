//! U-Boot's legacy image format (`uImage`): a 64-byte big-endian header before the data, as
//! U-Boot's `include/image.h` defines it (`struct legacy_img_hdr`) and `mkimage` writes it —
//! written and taken off natively, so a worker needs no u-boot-tools:
//!
//! | offset | field | |
//! |---|---|---|
//! | 0 | `ih_magic` | `0x27051956` |
//! | 4 | `ih_hcrc` | CRC-32 of the header with this field zero |
//! | 8 | `ih_time` | seconds since the epoch (`SOURCE_DATE_EPOCH` when set, as mkimage) |
//! | 12 | `ih_size` | data size |
//! | 16 | `ih_load` | load address |
//! | 20 | `ih_ep` | entry point |
//! | 24 | `ih_dcrc` | CRC-32 of the data |
//! | 28 | `ih_os`, `ih_arch`, `ih_type`, `ih_comp` | one byte each |
//! | 32 | `ih_name` | 32 bytes, NUL padded |
//!
//! The CRC is zlib's CRC-32 (`crc32fast`), as U-Boot's `crc32()`.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// `IH_MAGIC`.
pub const MAGIC: u32 = 0x2705_1956;
/// Size of the header.
pub const HEADER_LEN: usize = 64;
/// `IH_OS_LINUX`.
pub const OS_LINUX: u8 = 5;
/// `IH_COMP_NONE`.
pub const COMP_NONE: u8 = 0;

/// `ih_type`: what the image holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageType {
    /// `IH_TYPE_KERNEL` (2).
    Kernel,
    /// `IH_TYPE_RAMDISK` (3).
    Ramdisk,
}

impl ImageType {
    fn code(self) -> u8 {
        match self {
            ImageType::Kernel => 2,
            ImageType::Ramdisk => 3,
        }
    }
}

/// Why an image cannot be wrapped or read.
#[derive(Debug, thiserror::Error)]
pub enum UImageError {
    #[error("unknown U-Boot architecture '{0}' (mkimage_arch): expected one of {list}", list = ARCHES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))]
    UnknownArch(String),
    #[error("the image is {0} bytes: a U-Boot legacy image holds at most 4 GiB")]
    TooLarge(u64),
    #[error("not a U-Boot legacy image (no 0x27051956 magic)")]
    NoHeader,
    #[error("the U-Boot header's CRC is wrong (0x{found:08x}, computed 0x{computed:08x})")]
    BadHeaderCrc { found: u32, computed: u32 },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// `ih_arch` by the names mkimage's `-A` takes (U-Boot's `uimage_arch` table).
pub const ARCHES: &[(&str, u8)] = &[
    ("alpha", 1),
    ("arm", 2),
    ("x86", 3),
    ("i386", 3),
    ("ia64", 4),
    ("mips", 5),
    ("mips64", 6),
    ("powerpc", 7),
    ("ppc", 7),
    ("s390", 8),
    ("sh", 9),
    ("sparc", 10),
    ("sparc64", 11),
    ("m68k", 12),
    ("microblaze", 14),
    ("nios2", 15),
    ("blackfin", 16),
    ("avr32", 17),
    ("st200", 18),
    ("sandbox", 19),
    ("nds32", 20),
    ("or1k", 21),
    ("arm64", 22),
    ("arc", 23),
    ("x86_64", 24),
    ("xtensa", 25),
    ("riscv", 26),
];

/// The `ih_arch` code of an architecture name.
pub fn arch_code(name: &str) -> Result<u8, UImageError> {
    ARCHES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, c)| *c)
        .ok_or_else(|| UImageError::UnknownArch(name.to_string()))
}

/// The fields of a header besides the CRCs and the size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub time: u32,
    pub load: u32,
    pub entry: u32,
    pub os: u8,
    pub arch: u8,
    pub image_type: ImageType,
    pub comp: u8,
    /// Up to 32 bytes (longer names are cut, as mkimage cuts them).
    pub name: Vec<u8>,
}

impl Header {
    /// A Linux image of `image_type` for `arch`, stamped now (or `SOURCE_DATE_EPOCH`).
    pub fn new(
        image_type: ImageType,
        arch: &str,
        load: u32,
        entry: u32,
    ) -> Result<Header, UImageError> {
        Ok(Header {
            time: timestamp(),
            load,
            entry,
            os: OS_LINUX,
            arch: arch_code(arch)?,
            image_type,
            comp: COMP_NONE,
            name: Vec::new(),
        })
    }

    /// The 64 header bytes for data of `size` bytes with CRC `dcrc`.
    pub fn encode(&self, size: u32, dcrc: u32) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        h[8..12].copy_from_slice(&self.time.to_be_bytes());
        h[12..16].copy_from_slice(&size.to_be_bytes());
        h[16..20].copy_from_slice(&self.load.to_be_bytes());
        h[20..24].copy_from_slice(&self.entry.to_be_bytes());
        h[24..28].copy_from_slice(&dcrc.to_be_bytes());
        h[28] = self.os;
        h[29] = self.arch;
        h[30] = self.image_type.code();
        h[31] = self.comp;
        let n = self.name.len().min(32);
        h[32..32 + n].copy_from_slice(&self.name[..n]);
        let hcrc = crc32fast::hash(&h);
        h[4..8].copy_from_slice(&hcrc.to_be_bytes());
        h
    }
}

/// mkimage's timestamp: `SOURCE_DATE_EPOCH` when set, else now.
fn timestamp() -> u32 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as u32)
                .unwrap_or(0)
        })
}

/// Whether `head` (the first bytes of a file) starts with a valid legacy header.
pub fn has_header(head: &[u8]) -> bool {
    check_header(head).is_ok()
}

/// Checks the magic and the header CRC of `head`; returns the data size it announces.
pub fn check_header(head: &[u8]) -> Result<u32, UImageError> {
    if head.len() < HEADER_LEN || head[0..4] != MAGIC.to_be_bytes() {
        return Err(UImageError::NoHeader);
    }
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&head[..HEADER_LEN]);
    let found = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    h[4..8].fill(0);
    let computed = crc32fast::hash(&h);
    if found != computed {
        return Err(UImageError::BadHeaderCrc { found, computed });
    }
    Ok(u32::from_be_bytes([h[12], h[13], h[14], h[15]]))
}

/// Wraps `data` (read to its end) into `out` with `header`: room for the header, the data
/// streamed with its CRC, then the header written in front. Returns the data size.
pub fn wrap<R: Read, W: Write + Seek>(
    header: &Header,
    data: &mut R,
    out: &mut W,
) -> Result<u32, UImageError> {
    let start = out.stream_position()?;
    out.write_all(&[0u8; HEADER_LEN])?;
    let mut crc = crc32fast::Hasher::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match data.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        crc.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        size += n as u64;
    }
    let size32 = u32::try_from(size).map_err(|_| UImageError::TooLarge(size))?;
    let end = out.stream_position()?;
    out.seek(SeekFrom::Start(start))?;
    out.write_all(&header.encode(size32, crc.finalize()))?;
    out.seek(SeekFrom::Start(end))?;
    out.flush()?;
    Ok(size32)
}

/// Wraps the file `src` into the new file `dest` (not through a symlink). Blocking.
pub fn wrap_file(header: &Header, src: &Path, dest: &Path) -> Result<u32, UImageError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut input = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(src)?;
    let _ = std::fs::remove_file(dest);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(dest)?;
    let mut w = io::BufWriter::with_capacity(1 << 20, &mut out);
    let n = wrap(header, &mut input, &mut w)?;
    w.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(t: ImageType, arch: &str, load: u32, entry: u32) -> Header {
        Header {
            time: 0,
            ..Header::new(t, arch, load, entry).unwrap()
        }
    }

    fn wrapped(h: &Header, data: &[u8]) -> Vec<u8> {
        let mut out = io::Cursor::new(Vec::new());
        wrap(h, &mut &data[..], &mut out).unwrap();
        out.into_inner()
    }

    /// `SOURCE_DATE_EPOCH=0 mkimage -A arm -O linux -T ramdisk -C none -d data out` with data
    /// `b"basalt ramdisk\n"`: the header mkimage 2023.01 wrote, once.
    const MKIMAGE_RAMDISK: &str =
        "270519564cbd4875000000000000000f0000000000000000d2c4231e05020300";
    /// `SOURCE_DATE_EPOCH=0 mkimage -A arm64 -O linux -T kernel -C none -a 0x80008000 -e
    /// 0x80008000 -d data out` with data `b"basalt kernel\n"`.
    const MKIMAGE_KERNEL: &str = "270519563f3ff052000000000000000e8000800080008000dce34e0205160200";

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn headers_match_what_mkimage_wrote() {
        let r = wrapped(
            &header(ImageType::Ramdisk, "arm", 0, 0),
            b"basalt ramdisk\n",
        );
        assert_eq!(hex(&r[..32]), MKIMAGE_RAMDISK);
        assert_eq!(&r[32..64], &[0u8; 32]);
        assert_eq!(&r[64..], b"basalt ramdisk\n");
        let k = wrapped(
            &header(ImageType::Kernel, "arm64", 0x8000_8000, 0x8000_8000),
            b"basalt kernel\n",
        );
        assert_eq!(hex(&k[..32]), MKIMAGE_KERNEL);
        assert_eq!(check_header(&k).unwrap(), 14);
    }

    /// With Debian's mkimage (u-boot-tools) installed, the same bytes as it writes, for
    /// several types, architectures and addresses (timestamps pinned by SOURCE_DATE_EPOCH).
    #[test]
    fn same_bytes_as_the_installed_mkimage() {
        if std::process::Command::new("mkimage")
            .arg("-V")
            .output()
            .is_err()
        {
            eprintln!("mkimage not installed (u-boot-tools): skipped");
            return;
        }
        let dir =
            crate::host::tempdir::tempdir_in(&std::env::temp_dir(), "basalt-uimage-").unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let src = dir.join("data");
        std::fs::write(&src, &data).unwrap();
        for (t, ty, arch, load, entry) in [
            (ImageType::Ramdisk, "ramdisk", "arm", 0, 0),
            (ImageType::Ramdisk, "ramdisk", "arm64", 0, 0),
            (
                ImageType::Kernel,
                "kernel",
                "arm",
                0x8200_0000u32,
                0x8200_0040u32,
            ),
            (ImageType::Kernel, "kernel", "x86_64", 0x10_0000, 0x10_0000),
            (
                ImageType::Kernel,
                "kernel",
                "riscv",
                0x8020_0000,
                0x8020_0000,
            ),
        ] {
            let out = dir.join("mk");
            let st = std::process::Command::new("mkimage")
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .args(["-A", arch, "-O", "linux", "-T", ty, "-C", "none"])
                .args(["-a", &format!("0x{load:x}"), "-e", &format!("0x{entry:x}")])
                .arg("-d")
                .arg(&src)
                .arg(&out)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(st.success());
            let theirs = std::fs::read(&out).unwrap();
            let mut h = header(t, arch, load, entry);
            h.time = 1_700_000_000;
            let ours = dir.join("ours");
            wrap_file(&h, &src, &ours).unwrap();
            assert_eq!(std::fs::read(&ours).unwrap(), theirs, "{ty} {arch}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_headers_are_told_apart() {
        let mut r = wrapped(&header(ImageType::Ramdisk, "arm", 0, 0), b"x");
        assert!(has_header(&r));
        r[10] ^= 1;
        assert!(matches!(
            check_header(&r),
            Err(UImageError::BadHeaderCrc { .. })
        ));
        assert!(matches!(
            check_header(b"\x1f\x8b"),
            Err(UImageError::NoHeader)
        ));
        assert!(matches!(arch_code("vax"), Err(UImageError::UnknownArch(_))));
    }
}
