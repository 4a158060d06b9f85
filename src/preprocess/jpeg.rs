//! A structural check of a JPEG's compressed image data, because decoders recover from
//! damage silently: zeroed or overwritten image data decodes to a grey or noisy picture with
//! no error, and would train as a real image. Like libjpeg's "Corrupt JPEG data" warnings, the
//! check walks the Huffman-coded blocks of sequential (baseline) JPEGs without decoding the
//! pixels and rejects a file whose data is cut short, holds an invalid code or a block with
//! more than 64 coefficients, or leaves bytes over after the last block.

use anyhow::{Result, bail, ensure};

/// Codes of the markers the check reads.
const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const DHT: u8 = 0xC4;
const DRI: u8 = 0xDD;

/// Checks the compressed data of `bytes`, a JPEG file (the caller knows it starts with SOI).
/// Progressive, lossless and arithmetic-coded files are not walked (they are rare and their
/// decoders are stricter); every scan of a sequential Huffman file is.
pub fn check(bytes: &[u8]) -> Result<()> {
    let mut parser = Parser { bytes, at: 2, tables: Default::default(), frame: None, restart: 0 };
    ensure!(bytes.len() >= 4 && bytes[1] == SOI, "not a JPEG file");
    loop {
        let marker = parser.next_marker()?;
        match marker {
            EOI => return Ok(()),
            SOS => parser.scan()?,
            // RSTn outside a scan, or fill: nothing to read.
            0xD0..=0xD7 | 0x01 => {}
            _ => {
                let segment = parser.segment()?;
                match marker {
                    DHT => parser.define_tables(segment)?,
                    DRI => {
                        ensure!(segment.len() >= 2, "a restart-interval segment is too short");
                        parser.restart = u16::from_be_bytes([segment[0], segment[1]]) as usize;
                    }
                    0xC0 | 0xC1 => parser.frame = Some(Frame::parse(segment)?),
                    // Progressive, lossless or arithmetic coding: not walked.
                    0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return Ok(()),
                    _ => {}
                }
            }
        }
    }
}

/// One Huffman table: for each code length, the first code, the number of codes and where
/// their symbols start.
#[derive(Clone, Default)]
struct Huffman {
    first_code: [u32; 17],
    count: [u32; 17],
    first_symbol: [usize; 17],
    symbols: Vec<u8>,
}

impl Huffman {
    fn parse(counts: &[u8], symbols: &[u8]) -> Self {
        let mut table = Huffman { symbols: symbols.to_vec(), ..Default::default() };
        let (mut code, mut index) = (0u32, 0usize);
        for length in 1..=16 {
            table.first_code[length] = code;
            table.count[length] = counts[length - 1] as u32;
            table.first_symbol[length] = index;
            code = (code + table.count[length]) << 1;
            index += counts[length - 1] as usize;
        }
        table
    }
}

/// DC and AC tables by index (0..4).
#[derive(Default)]
struct Tables {
    dc: [Option<Huffman>; 4],
    ac: [Option<Huffman>; 4],
}

struct Component {
    id: u8,
    h: usize,
    v: usize,
}

struct Frame {
    width: usize,
    height: usize,
    components: Vec<Component>,
}

impl Frame {
    fn parse(segment: &[u8]) -> Result<Self> {
        ensure!(segment.len() >= 6, "the frame header is too short");
        let height = u16::from_be_bytes([segment[1], segment[2]]) as usize;
        let width = u16::from_be_bytes([segment[3], segment[4]]) as usize;
        let count = segment[5] as usize;
        ensure!(segment.len() >= 6 + 3 * count, "the frame header is too short");
        let components = (0..count)
            .map(|i| {
                let c = &segment[6 + 3 * i..9 + 3 * i];
                Component {
                    id: c[0],
                    h: (c[1] >> 4).max(1) as usize,
                    v: (c[1] & 15).max(1) as usize,
                }
            })
            .collect();
        ensure!(width > 0 && height > 0, "the image has no pixels");
        Ok(Self { width, height, components })
    }

    fn max_sampling(&self) -> (usize, usize) {
        let h = self.components.iter().map(|c| c.h).max().unwrap_or(1);
        let v = self.components.iter().map(|c| c.v).max().unwrap_or(1);
        (h, v)
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
    tables: Tables,
    frame: Option<Frame>,
    restart: usize,
}

impl<'a> Parser<'a> {
    fn next_marker(&mut self) -> Result<u8> {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while self.at < self.bytes.len() && self.bytes[self.at] != 0xFF {
            self.at += 1;
        }
        while self.at < self.bytes.len() && self.bytes[self.at] == 0xFF {
            self.at += 1;
        }
        ensure!(self.at < self.bytes.len(), "the JPEG ends without an end-of-image marker");
        self.at += 1;
        Ok(self.bytes[self.at - 1])
    }

    fn segment(&mut self) -> Result<&'a [u8]> {
        ensure!(self.at + 2 <= self.bytes.len(), "a JPEG segment is cut short");
        let length = u16::from_be_bytes([self.bytes[self.at], self.bytes[self.at + 1]]) as usize;
        ensure!(length >= 2 && self.at + length <= self.bytes.len(), "a JPEG segment is cut short");
        let segment = &self.bytes[self.at + 2..self.at + length];
        self.at += length;
        Ok(segment)
    }

    fn define_tables(&mut self, mut segment: &[u8]) -> Result<()> {
        while !segment.is_empty() {
            ensure!(segment.len() >= 17, "a Huffman table is cut short");
            let (class, index) = (segment[0] >> 4, (segment[0] & 15) as usize);
            let counts = &segment[1..17];
            let total: usize = counts.iter().map(|&c| c as usize).sum();
            ensure!(index < 4 && segment.len() >= 17 + total, "a Huffman table is malformed");
            let table = Huffman::parse(counts, &segment[17..17 + total]);
            match class {
                0 => self.tables.dc[index] = Some(table),
                _ => self.tables.ac[index] = Some(table),
            }
            segment = &segment[17 + total..];
        }
        Ok(())
    }

    /// Walks one scan's blocks, then leaves `at` on the marker that ends it.
    fn scan(&mut self) -> Result<()> {
        let header = self.segment()?;
        let Some(frame) = &self.frame else { bail!("image data before the frame header") };
        ensure!(!header.is_empty(), "the scan header is too short");
        let count = header[0] as usize;
        ensure!(header.len() > 2 * count, "the scan header is too short");
        let mut members = Vec::with_capacity(count);
        for i in 0..count {
            let (id, tables) = (header[1 + 2 * i], header[2 + 2 * i]);
            let Some(component) = frame.components.iter().find(|c| c.id == id) else {
                bail!("the scan names a component the frame does not have")
            };
            let dc = self.tables.dc[(tables >> 4) as usize & 3].clone();
            let ac = self.tables.ac[(tables & 15) as usize & 3].clone();
            let (Some(dc), Some(ac)) = (dc, ac) else {
                bail!("the scan uses an undefined Huffman table")
            };
            members.push((component, dc, ac));
        }
        let (hmax, vmax) = frame.max_sampling();
        // Blocks per MCU of each member, and MCUs in the scan.
        let (mcus, blocks): (usize, Vec<usize>) = if count == 1 {
            let c = members[0].0;
            let w = (frame.width * c.h).div_ceil(hmax).div_ceil(8);
            let h = (frame.height * c.v).div_ceil(vmax).div_ceil(8);
            (w * h, vec![1])
        } else {
            let w = frame.width.div_ceil(8 * hmax);
            let h = frame.height.div_ceil(8 * vmax);
            (w * h, members.iter().map(|(c, _, _)| c.h * c.v).collect())
        };
        let mut bits =
            BitReader { bytes: self.bytes, at: self.at, buffer: 0, filled: 0, padded: 0 };
        for mcu in 0..mcus {
            if self.restart > 0 && mcu > 0 && mcu % self.restart == 0 {
                bits.restart()?;
            }
            for ((_, dc, ac), &n) in members.iter().zip(&blocks) {
                for _ in 0..n {
                    block(&mut bits, dc, ac)?;
                }
            }
        }
        // Only the fill bits of the last byte (and 0xFF fill bytes) may follow the last block.
        let next = bits.byte_position();
        let marker = marker_position(self.bytes, next);
        let stray = self.bytes[next..marker].iter().filter(|&&b| b != 0xFF).count();
        ensure!(stray == 0, "the JPEG's image data has {stray} stray byte(s) after its last block");
        self.at = marker;
        Ok(())
    }
}

/// Where the next marker starts at or after `from` (the end of the file if none does).
fn marker_position(bytes: &[u8], from: usize) -> usize {
    (from..bytes.len().saturating_sub(1))
        .find(|&i| bytes[i] == 0xFF && bytes[i + 1] != 0 && bytes[i + 1] != 0xFF)
        .unwrap_or(bytes.len())
}

/// One 8x8 block: a DC difference and up to 63 AC coefficients.
fn block(bits: &mut BitReader, dc: &Huffman, ac: &Huffman) -> Result<()> {
    let size = bits.decode(dc)?;
    ensure!(size <= 11, "an invalid DC coefficient in the JPEG's image data");
    bits.skip(size as u32)?;
    let mut k = 1;
    while k < 64 {
        let symbol = bits.decode(ac)?;
        let (run, size) = ((symbol >> 4) as usize, (symbol & 15) as u32);
        if size == 0 {
            if run != 15 {
                return Ok(()); // end of block
            }
            k += 16;
        } else {
            k += run + 1;
            bits.skip(size)?;
        }
    }
    ensure!(k == 64, "a block of the JPEG's image data has more than 64 coefficients");
    Ok(())
}

/// Bits of the entropy-coded data, with 0xFF00 byte stuffing; stops at a marker.
struct BitReader<'a> {
    bytes: &'a [u8],
    at: usize,
    buffer: u64,
    filled: u32,
    /// Zero bytes appended after the data ended (at a marker), as libjpeg pads: reading into
    /// them means the data was cut short.
    padded: u32,
}

impl BitReader<'_> {
    fn refill(&mut self) {
        while self.filled <= 56 {
            let byte = match self.bytes.get(self.at) {
                Some(0xFF) if self.bytes.get(self.at + 1) == Some(&0) => {
                    self.at += 2;
                    0xFF
                }
                Some(0xFF) | None => {
                    self.padded += 1;
                    0
                }
                Some(&byte) => {
                    self.at += 1;
                    byte
                }
            };
            self.buffer |= (byte as u64) << (56 - self.filled);
            self.filled += 8;
        }
    }

    fn bit(&mut self) -> u32 {
        if self.filled == 0 {
            self.refill();
        }
        let bit = (self.buffer >> 63) as u32;
        self.buffer <<= 1;
        self.filled -= 1;
        bit
    }

    fn skip(&mut self, count: u32) -> Result<()> {
        for _ in 0..count {
            self.bit();
        }
        ensure!(!self.overran(), "the JPEG's image data is cut short");
        Ok(())
    }

    /// Whether bits past the end of the data have been read.
    fn overran(&self) -> bool {
        self.filled < 8 * self.padded
    }

    fn decode(&mut self, table: &Huffman) -> Result<u8> {
        let mut code = 0u32;
        for length in 1..=16 {
            code = (code << 1) | self.bit();
            let offset = code.wrapping_sub(table.first_code[length]);
            if code >= table.first_code[length] && offset < table.count[length] {
                ensure!(!self.overran(), "the JPEG's image data is cut short");
                let index = table.first_symbol[length] + offset as usize;
                return table
                    .symbols
                    .get(index)
                    .copied()
                    .ok_or_else(|| anyhow::anyhow!("a Huffman table of the JPEG is malformed"));
            }
        }
        bail!("an invalid Huffman code in the JPEG's image data")
    }

    /// Position of the first byte not yet consumed (fill bits of a partial byte dropped).
    fn byte_position(&self) -> usize {
        let unread_bytes = (self.filled / 8).saturating_sub(self.padded) as usize;
        // Stuffed 0xFF00 pairs count two bytes each; walk back over what was buffered.
        let mut at = self.at;
        for _ in 0..unread_bytes {
            at -= if at >= 2 && self.bytes[at - 2] == 0xFF && self.bytes[at - 1] == 0 {
                2
            } else {
                1
            };
        }
        at
    }

    /// At a restart interval: drop the fill bits, expect an RSTn marker, start afresh.
    fn restart(&mut self) -> Result<()> {
        let at = self.byte_position();
        ensure!(
            at + 1 < self.bytes.len()
                && self.bytes[at] == 0xFF
                && (0xD0..=0xD7).contains(&self.bytes[at + 1]),
            "a restart marker of the JPEG's image data is missing"
        );
        self.at = at + 2;
        self.buffer = 0;
        self.filled = 0;
        self.padded = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 48x40 colour JPEG (4:2:0 by default), optionally with restart markers or progressive.
    fn jpeg(restart: Option<u16>, progressive: bool) -> Vec<u8> {
        let (w, h) = (48u16, 40u16);
        let pixels: Vec<u8> = (0..w as usize * h as usize)
            .flat_map(|i| [(i % 48 * 5) as u8, (i / 48 * 6) as u8, ((i * 7) % 256) as u8])
            .collect();
        let mut bytes = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut bytes, 90);
        if let Some(interval) = restart {
            encoder.set_restart_interval(interval);
        }
        encoder.set_progressive(progressive);
        encoder.encode(&pixels, w, h, jpeg_encoder::ColorType::Rgb).unwrap();
        bytes
    }

    /// The range of the first scan's entropy-coded data.
    fn image_data(bytes: &[u8]) -> std::ops::Range<usize> {
        let sos = bytes.windows(2).position(|w| w == [0xFF, SOS]).unwrap();
        let start = sos + 2 + u16::from_be_bytes([bytes[sos + 2], bytes[sos + 3]]) as usize;
        start..marker_position(bytes, start)
    }

    #[test]
    fn intact_files_pass() {
        for bytes in [jpeg(None, false), jpeg(Some(2), false), jpeg(None, true)] {
            check(&bytes).unwrap();
        }
    }

    #[test]
    fn zeroed_garbage_and_stray_image_data_are_rejected() {
        for original in [jpeg(None, false), jpeg(Some(3), false)] {
            let data = image_data(&original);
            let mut zeroed = original.clone();
            zeroed[data.clone()].fill(0);
            let mut garbage = original.clone();
            for (i, byte) in garbage[data.clone()].iter_mut().enumerate() {
                // Pseudo-random bytes without 0xFF, so no marker appears.
                *byte = ((i * 167 + 13) % 255) as u8;
            }
            let mut stray = original.clone();
            stray.splice(data.end..data.end, [0x12, 0x34]);
            for (name, bytes) in [("zeroed", zeroed), ("garbage", garbage), ("stray", stray)] {
                assert!(check(&bytes).is_err(), "{name} data passed the check");
            }
        }
    }
}
