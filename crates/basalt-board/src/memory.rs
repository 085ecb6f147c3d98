//! The simulated board's memory map: what was loaded where.
//!
//! Like QEMU's arm64 `virt` machine: 64 MiB of NOR flash at 0 (read-only, holding a small
//! stand-in kernel image for the default `bootcmd`) and 1 GiB of DRAM at 0x4000_0000, the
//! top of which U-Boot keeps for itself (relocated code, its device tree at
//! `fdtcontroladdr`). Only what was loaded is stored (sparse regions), so a 30 MiB kernel
//! costs 30 MiB, not the whole DRAM.

use std::collections::BTreeMap;

/// Start of DRAM.
pub(crate) const DRAM_BASE: u64 = 0x4000_0000;
/// Start of the area U-Boot reserves for itself; loads must end below it.
pub(crate) const RESERVED_BASE: u64 = 0x7ddb_2000;
/// Where U-Boot's own device tree is (`fdtcontroladdr`).
pub(crate) const FDT_CONTROL_ADDR: u64 = 0x7edb_6db0;
/// Start of NOR flash.
pub(crate) const FLASH_BASE: u64 = 0;

/// The arm64 Image header magic ("ARM\x64") at offset 0x38.
pub(crate) const ARM64_MAGIC: &[u8; 4] = b"ARM\x64";
/// The arm zImage magic (little-endian 0x016f2818) at offset 0x24.
pub(crate) const ZIMAGE_MAGIC: u32 = 0x016f_2818;
/// The legacy uImage magic (big-endian) at offset 0.
pub(crate) const UIMAGE_MAGIC: u32 = 0x2705_1956;
/// The flattened device tree magic (big-endian) at offset 0.
pub(crate) const FDT_MAGIC: u32 = 0xd00d_feed;

/// Loaded regions, keyed by start address.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    regions: BTreeMap<u64, Vec<u8>>,
}

impl Memory {
    /// The memory of a freshly powered board: the flash image and U-Boot's device tree.
    pub fn new() -> Self {
        let mut m = Memory::default();
        m.regions.insert(FLASH_BASE, stand_in_kernel());
        m.regions.insert(FDT_CONTROL_ADDR, stand_in_fdt(0x1_0000));
        m
    }

    /// How many bytes may be loaded at `addr` (0 when `addr` is not loadable DRAM).
    pub fn loadable(&self, addr: u64) -> u64 {
        if (DRAM_BASE..RESERVED_BASE).contains(&addr) {
            RESERVED_BASE - addr
        } else {
            0
        }
    }

    /// Stores `data` at `addr`, replacing whatever overlapped it.
    pub fn store(&mut self, addr: u64, data: Vec<u8>) {
        let end = addr.saturating_add(data.len() as u64);
        let overlapping: Vec<u64> = self
            .regions
            .range(..end)
            .filter(|(start, d)| **start + d.len() as u64 > addr)
            .map(|(start, _)| *start)
            .collect();
        for start in overlapping {
            let Some(old) = self.regions.remove(&start) else {
                continue;
            };
            let old_end = start + old.len() as u64;
            if start < addr {
                let keep = (addr - start) as usize;
                self.regions.insert(start, old[..keep].to_vec());
            }
            if old_end > end {
                let from = (end - start) as usize;
                self.regions.insert(end, old[from..].to_vec());
            }
        }
        if !data.is_empty() {
            self.regions.insert(addr, data);
        }
    }

    /// The loaded bytes from `addr` to the end of the region holding it.
    pub fn at(&self, addr: u64) -> Option<&[u8]> {
        let (start, data) = self.regions.range(..=addr).next_back()?;
        let off = (addr - start) as usize;
        (off < data.len()).then(|| &data[off..])
    }
}

/// A stand-in arm64 `Image`: a valid 64-byte header, then zeros.
fn stand_in_kernel() -> Vec<u8> {
    let size: usize = 0x10_0000;
    let mut image = vec![0u8; size];
    // b #0x40 (branch over the header), as a real Image starts with "MZ" or a branch.
    image[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes());
    // text_offset 0, image_size, flags (little-endian, 4K pages)
    image[16..24].copy_from_slice(&(size as u64).to_le_bytes());
    image[24..32].copy_from_slice(&0x2u64.to_le_bytes());
    image[0x38..0x3c].copy_from_slice(ARM64_MAGIC);
    image
}

/// A stand-in flattened device tree of `size` bytes: a valid header, then zeros.
fn stand_in_fdt(size: u32) -> Vec<u8> {
    let mut fdt = vec![0u8; size as usize];
    fdt[0..4].copy_from_slice(&FDT_MAGIC.to_be_bytes());
    fdt[4..8].copy_from_slice(&size.to_be_bytes());
    fdt[20..24].copy_from_slice(&17u32.to_be_bytes()); // version
    fdt[24..28].copy_from_slice(&16u32.to_be_bytes()); // last compatible version
    fdt
}

/// Reads a big-endian u32 at `off`.
pub(crate) fn be32(data: &[u8], off: usize) -> Option<u32> {
    let b = data.get(off..off + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads a little-endian u32 at `off`.
pub(crate) fn le32(data: &[u8], off: usize) -> Option<u32> {
    let b = data.get(off..off + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_and_overlap() {
        let mut m = Memory::new();
        assert_eq!(m.at(0x4040_0000), None);
        m.store(0x4040_0000, vec![1; 100]);
        assert_eq!(m.at(0x4040_0000).map(<[u8]>::len), Some(100));
        assert_eq!(m.at(0x4040_0000 + 99), Some(&[1u8][..]));
        assert_eq!(m.at(0x4040_0000 + 100), None);
        m.store(0x4040_0000 + 10, vec![2; 10]);
        assert_eq!(m.at(0x4040_0000).map(<[u8]>::len), Some(10));
        assert_eq!(m.at(0x4040_0000 + 10).map(<[u8]>::len), Some(10));
        assert_eq!(m.at(0x4040_0000 + 20).map(<[u8]>::len), Some(80));
        assert_eq!(m.at(0x4040_0000 + 15).map(|d| d[0]), Some(2));
        m.store(0x4040_0000, vec![3; 200]);
        assert_eq!(m.at(0x4040_0000).map(<[u8]>::len), Some(200));
        assert_eq!(m.at(0x4040_0000 + 50).map(|d| d[0]), Some(3));
    }

    #[test]
    fn map() {
        let m = Memory::new();
        assert_eq!(m.loadable(0x4040_0000), RESERVED_BASE - 0x4040_0000);
        assert_eq!(m.loadable(0x10), 0);
        assert_eq!(m.loadable(RESERVED_BASE), 0);
        let k = m.at(FLASH_BASE).unwrap();
        assert_eq!(&k[0x38..0x3c], ARM64_MAGIC);
        assert_eq!(be32(m.at(FDT_CONTROL_ADDR).unwrap(), 0), Some(FDT_MAGIC));
    }
}
