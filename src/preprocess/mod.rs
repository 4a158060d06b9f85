//! Image preprocessing shared by every command: decode, resize, normalise.

mod jpeg;
mod scaled_jpeg;

use std::io::Cursor;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail, ensure};
use burn::tensor::{Device, Tensor, TensorData};
use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};

/// How pixel values are mapped to network inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalization {
    /// RGB->BGR minus the ImageNet channel means, no scaling: what the Keras weights expect.
    Caffe,
    /// x / 255 in RGB order: what the notebook did (`ImageDataGenerator(rescale=1/255)`).
    Rescale,
}

crate::spelled_setting!(Normalization);

/// ImageNet means of the B, G, R channels (Keras "caffe" preprocessing).
const CAFFE_MEAN_BGR: [f32; 3] = [103.939, 116.779, 123.68];

impl Normalization {
    /// Network input channels for one RGB pixel (values 0..=255), in the network's order.
    #[inline]
    pub fn channels(self, [r, g, b]: [f32; 3]) -> [f32; 3] {
        match self {
            Normalization::Caffe => {
                [b - CAFFE_MEAN_BGR[0], g - CAFFE_MEAN_BGR[1], r - CAFFE_MEAN_BGR[2]]
            }
            Normalization::Rescale => [r / 255.0, g / 255.0, b / 255.0],
        }
    }

    /// Writes an interleaved RGB image (`h*w*3` bytes) as network input: the same pixel
    /// order (channels last, NHWC), each pixel's channels normalised.
    pub fn write_input(self, rgb: &[u8], out: &mut [f32]) {
        debug_assert_eq!(out.len(), rgb.len());
        for (px, value) in rgb.chunks_exact(3).zip(out.chunks_exact_mut(3)) {
            value.copy_from_slice(&self.channels([px[0] as f32, px[1] as f32, px[2] as f32]));
        }
    }
}

/// The network input tensor of `n` normalised square images of `size` pixels, as
/// [`Normalization::write_input`] lays them out: `[n, size, size, 3]` (NHWC).
pub fn input_tensor(values: Vec<f32>, n: usize, size: usize, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, [n, size, size, 3]), device)
}

/// Stacks square RGB images (`size*size*3` bytes each) into a normalised network input.
pub fn batch_tensor(
    images: &[&[u8]],
    size: usize,
    normalization: Normalization,
    device: &Device,
) -> Tensor<4> {
    let per_image = 3 * size * size;
    let mut values = vec![0f32; images.len() * per_image];
    for (rgb, out) in images.iter().zip(values.chunks_exact_mut(per_image)) {
        normalization.write_input(rgb, out);
    }
    input_tensor(values, images.len(), size, device)
}

/// How an image file becomes a network input: the centred square (a `crop` fraction of the
/// shorter side), resized to `size` pixels, normalised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputSpec {
    pub size: usize,
    /// Fraction of the shorter side kept: 1 for trained runs (the whole fruit), 224/256 for
    /// the ImageNet model (its evaluation crop: shorter side to 256, centre 224).
    pub crop: f32,
    pub normalization: Normalization,
}

impl InputSpec {
    /// The ImageNet evaluation preprocessing of the Keras ResNet-50 weights.
    pub const IMAGENET: Self =
        Self { size: 224, crop: 224.0 / 256.0, normalization: Normalization::Caffe };

    /// The spec of a model trained at `size` pixels on the centred `crop` fraction of the
    /// shorter side with `normalization`.
    pub fn trained(size: usize, crop: f32, normalization: Normalization) -> Self {
        Self { size, crop, normalization }
    }

    /// Decodes `path` into the square RGB image the network sees (a large JPEG at a reduced
    /// size that still covers it).
    pub fn load(&self, path: &Path) -> Result<RgbImage> {
        self.read(path).map(|(_, image)| image)
    }

    /// The file's bytes and the square RGB image the network sees of them.
    pub fn read(&self, path: &Path) -> Result<(Vec<u8>, RgbImage)> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let image = decode_bytes_at(&bytes, Some(self.shorter_side()))
            .with_context(|| format!("{} is not a usable image", path.display()))?;
        Ok((bytes, self.square(image)))
    }

    /// The shorter side the image is resized to before the centre is cut.
    pub fn shorter_side(&self) -> u32 {
        (self.size as f32 / self.crop).ceil() as u32
    }

    /// The square RGB image the network sees of an already decoded image.
    pub fn square(&self, image: RgbImage) -> RgbImage {
        if self.crop >= 1.0 {
            return resize_square(image, self.size as u32);
        }
        // Resize the shorter side to `size / crop` pixels and cut out the centre, exactly as
        // the reference pipeline does (PIL's bilinear resize, then a centre crop). Very
        // elongated images are first cut to 2:1, which bounds the intermediate image and
        // leaves the centre unchanged.
        let (w, h) = image.dimensions();
        let short = w.min(h);
        let (cw, ch) = (w.min(2 * short), h.min(2 * short));
        let image = image::imageops::crop_imm(&image, (w - cw) / 2, (h - ch) / 2, cw, ch);
        let outer = self.size as f32 / self.crop;
        let scale = outer / short as f32;
        let (rw, rh) = ((cw as f32 * scale).round() as u32, (ch as f32 * scale).round() as u32);
        let resized = image::imageops::resize(&*image, rw, rh, FilterType::Triangle);
        let size = self.size as u32;
        image::imageops::crop_imm(&resized, (rw - size) / 2, (rh - size) / 2, size, size).to_image()
    }
}

/// Decodes an image file of any supported format and colour type into 8-bit RGB.
/// The format comes from the file's content, not its extension.
pub fn decode(path: &Path) -> Result<RgbImage> {
    read_and_decode(path).map(|(_, image)| image)
}

/// The bytes of an image file and the image they decode to.
pub fn read_and_decode(path: &Path) -> Result<(Vec<u8>, RgbImage)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let image = decode_bytes(&bytes)
        .with_context(|| format!("{} is not a usable image", path.display()))?;
    Ok((bytes, image))
}

/// Decodes JPEG, PNG or WebP bytes into 8-bit RGB, upright: the EXIF orientation a camera
/// records is applied; grayscale is replicated, 16-bit is scaled, CMYK is converted, and
/// transparent pixels are composited onto white (the Fruits-360 background). Truncated files
/// are an error, never a silently grey-filled image.
pub fn decode_bytes(bytes: &[u8]) -> Result<RgbImage> {
    decode_bytes_at(bytes, None)
}

/// As [`decode_bytes`]; a JPEG whose shorter side is at least four times `shorter_side` is
/// decoded at 1/2, 1/4 or 1/8 of its size (its inverse DCT scaled), as small as still leaves
/// twice `shorter_side`: a 12-megapixel photo then costs a sixteenth of the memory.
pub fn decode_bytes_at(bytes: &[u8], shorter_side: Option<u32>) -> Result<RgbImage> {
    if bytes.is_empty() {
        bail!("the file is empty");
    }
    if let Some(kind) = heif_brand(bytes) {
        bail!(
            "{kind} images are not read (JPEG, PNG or WebP only): convert them to JPEG, e.g. with `heif-convert`, or set the camera to save JPEG (\"Most Compatible\")"
        );
    }
    let format = image::guess_format(bytes)
        .map_err(|_| anyhow!("the content is not a JPEG, PNG or WebP image"))?;
    match format {
        ImageFormat::Jpeg => {
            ensure_complete_jpeg(bytes)?;
            jpeg::check(bytes)?;
            if let Some(image) = scaled_jpeg::decode_scaled(bytes, shorter_side)? {
                return Ok(image);
            }
        }
        ImageFormat::Png | ImageFormat::WebP => {}
        other => bail!("{other:?} images are not read (JPEG, PNG or WebP only)"),
    }
    let mut decoder = ImageReader::with_format(Cursor::new(bytes), format)
        .into_decoder()
        .map_err(|error| anyhow!("{error}"))?;
    let orientation = image::ImageDecoder::orientation(&mut decoder)
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|error| anyhow!("{error}"))?;
    image.apply_orientation(orientation);
    ensure!(image.width() > 0 && image.height() > 0, "the image has no pixels");
    Ok(flatten_alpha(image))
}

/// The kind of an ISO-BMFF image (HEIC, HEIF, AVIF), which is not read, if `bytes` is one.
fn heif_brand(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() < 12 || &bytes[4..8] != b"ftyp" {
        return None;
    }
    match &bytes[8..12] {
        b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" => Some("HEIC"),
        b"mif1" | b"msf1" => Some("HEIF"),
        b"avif" | b"avis" => Some("AVIF"),
        _ => None,
    }
}

/// The width and height an image file declares, read from its header without decoding it:
/// what a server checks before it lets an upload allocate memory.
pub fn declared_dimensions(bytes: &[u8]) -> Result<(u32, u32)> {
    let format = image::guess_format(bytes)
        .map_err(|_| anyhow!("the content is not a JPEG, PNG or WebP image"))?;
    ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|error| anyhow!("{error}"))
}

/// A JPEG must end its last scan with an end-of-image marker. Inside entropy-coded data a
/// 0xFF byte is always followed by 0x00 or a restart marker, so FF D9 after the last
/// start-of-scan (FF DA) can only be the real end; without it the file was cut short.
fn ensure_complete_jpeg(bytes: &[u8]) -> Result<()> {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let complete =
        last_scan.is_some_and(|scan| bytes[scan..].windows(2).any(|w| w == [0xFF, 0xD9]));
    ensure!(complete, "the JPEG is truncated (no end-of-image marker after its image data)");
    Ok(())
}

/// RGB pixels, with any alpha channel composited onto white.
fn flatten_alpha(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let alpha = a as u32;
        let over_white = |c: u8| ((c as u32 * alpha + 255 * (255 - alpha) + 127) / 255) as u8;
        image::Rgb([over_white(r), over_white(g), over_white(b)])
    })
}

/// The centred square of the image (side: its shorter side), resized to `size` x `size`: the
/// same as resizing the shorter side to `size` and cropping, without ever building a huge
/// intermediate for very elongated images. Images already `size` x `size` (all of Fruits-360
/// at the default size) are returned as they are.
pub fn resize_square(image: RgbImage, size: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    if w == size && h == size {
        return image;
    }
    let side = w.min(h);
    let square =
        image::imageops::crop_imm(&image, (w - side) / 2, (h - side) / 2, side, side).to_image();
    image::imageops::resize(&square, size, size, FilterType::Triangle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caffe_is_bgr_minus_mean_and_rescale_is_rgb_over_255() {
        let rgb = [255u8, 0, 10, 0, 128, 0];
        let mut out = [0f32; 6];
        Normalization::Caffe.write_input(&rgb, &mut out);
        assert_eq!(out[0], 10.0 - 103.939); // pixel 0: B
        assert_eq!(out[2], 255.0 - 123.68); // pixel 0: R
        assert_eq!(out[4], 128.0 - 116.779); // pixel 1: G
        Normalization::Rescale.write_input(&rgb, &mut out);
        assert_eq!(out, [1.0, 0.0, 10.0 / 255.0, 0.0, 128.0 / 255.0, 0.0]);
    }

    fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut bytes = Vec::new();
        image.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
        bytes
    }

    #[test]
    fn truncated_jpeg_is_rejected_and_complete_one_decodes() {
        let image = DynamicImage::ImageRgb8(RgbImage::from_fn(32, 32, |x, y| {
            image::Rgb([x as u8 * 8, y as u8 * 8, 90])
        }));
        let jpeg = encode(&image, ImageFormat::Jpeg);
        assert_eq!(decode_bytes(&jpeg).unwrap().dimensions(), (32, 32));
        let error = decode_bytes(&jpeg[..jpeg.len() * 2 / 3]).unwrap_err();
        assert!(error.to_string().contains("truncated"), "{error}");
    }

    #[test]
    fn transparent_png_pixels_become_white() {
        let rgba = image::RgbaImage::from_fn(2, 1, |x, _| {
            image::Rgba([0, 0, 0, if x == 0 { 0 } else { 255 }])
        });
        let rgb = decode_bytes(&encode(&DynamicImage::ImageRgba8(rgba), ImageFormat::Png)).unwrap();
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(rgb.get_pixel(1, 0).0, [0, 0, 0]);
    }

    #[test]
    fn non_images_say_so() {
        assert!(decode_bytes(b"").unwrap_err().to_string().contains("empty"));
        assert!(
            decode_bytes(b"hello, world")
                .unwrap_err()
                .to_string()
                .contains("not a JPEG, PNG or WebP")
        );
        let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
        let error = decode_bytes(heic).unwrap_err().to_string();
        assert!(error.contains("HEIC") && error.contains("convert"), "{error}");
    }

    #[test]
    fn webp_is_read() {
        let image = DynamicImage::ImageRgb8(RgbImage::from_fn(24, 16, |x, _| {
            image::Rgb([x as u8 * 10, 50, 200])
        }));
        let webp = encode(&image, ImageFormat::WebP);
        let decoded = decode_bytes(&webp).unwrap();
        assert_eq!(decoded.dimensions(), (24, 16));
        assert_eq!(decoded.get_pixel(3, 3).0, [30, 50, 200]);
    }

    /// A JPEG of `w` x `h` pixels, red on the left half and blue on the right, with an EXIF
    /// orientation tag `orientation` inserted after its start marker.
    fn tagged_jpeg(w: u32, h: u32, orientation: u8) -> Vec<u8> {
        let image = RgbImage::from_fn(w, h, |x, _| {
            if x < w / 2 { image::Rgb([255, 0, 0]) } else { image::Rgb([0, 0, 255]) }
        });
        let jpeg = encode(&DynamicImage::ImageRgb8(image), ImageFormat::Jpeg);
        // Big-endian TIFF with one IFD entry: tag 0x0112 (orientation), SHORT, count 1.
        let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0".to_vec();
        tiff.extend([orientation, 0, 0, 0, 0, 0, 0]);
        let payload = [b"Exif\0\0".as_slice(), &tiff].concat();
        let length = (payload.len() + 2) as u16;
        [&jpeg[..2], &[0xFF, 0xE1], &length.to_be_bytes(), &payload, &jpeg[2..]].concat()
    }

    #[test]
    fn exif_orientation_turns_stored_pixels_upright() {
        // Orientation 6: the stored pixels are to be turned 90 degrees clockwise, so the red
        // left half ends on top. Both decoders: full size, and the reduced one for large JPEGs.
        for (w, h, shorter_side) in [(16, 8, None), (256, 128, Some(16))] {
            let upright = decode_bytes_at(&tagged_jpeg(w, h, 6), shorter_side).unwrap();
            let (uw, uh) = upright.dimensions();
            assert!(uh == 2 * uw, "{w}x{h} decoded as {uw}x{uh}");
            let [top, bottom] = [uh / 4, 3 * uh / 4].map(|y| upright.get_pixel(uw / 2, y).0);
            assert!(top[0] > 200 && top[2] < 60, "top of {w}x{h}: {top:?}");
            assert!(bottom[2] > 200 && bottom[0] < 60, "bottom of {w}x{h}: {bottom:?}");
        }
        // Without a tag the pixels stay as stored.
        assert_eq!(decode_bytes(&tagged_jpeg(16, 8, 1)).unwrap().dimensions(), (16, 8));
    }

    #[test]
    fn large_jpegs_are_decoded_small_but_never_below_the_size_asked() {
        let jpeg = tagged_jpeg(800, 600, 1);
        assert_eq!(decode_bytes_at(&jpeg, Some(150)).unwrap().dimensions(), (400, 300));
        assert_eq!(decode_bytes_at(&jpeg, Some(70)).unwrap().dimensions(), (200, 150));
        assert_eq!(decode_bytes_at(&jpeg, Some(37)).unwrap().dimensions(), (100, 75));
        assert_eq!(decode_bytes_at(&jpeg, Some(256)).unwrap().dimensions(), (800, 600));
        assert_eq!(decode_bytes_at(&jpeg, None).unwrap().dimensions(), (800, 600));
    }

    #[test]
    fn photos_keep_the_centre_of_the_shorter_side() {
        // 400 x 200, a 20-column marker at the centre: ImageNet's crop (7/8) keeps the centre
        // 175 x 175 of the resized image and the marker stays in its middle.
        let image = RgbImage::from_fn(400, 200, |x, _| {
            image::Rgb(if (190..210).contains(&x) { [0, 255, 0] } else { [90, 90, 90] })
        });
        let spec = InputSpec::trained(56, 0.875, Normalization::Caffe);
        assert_eq!(spec.shorter_side(), 64);
        let square = spec.square(image);
        assert_eq!(square.dimensions(), (56, 56));
        assert_eq!(square.get_pixel(28, 28).0, [0, 255, 0]);
        assert_eq!(square.get_pixel(2, 28).0, [90, 90, 90]);
    }

    #[test]
    fn resize_square_crops_the_centre() {
        let image = RgbImage::from_fn(40, 20, |x, _| image::Rgb([x as u8, 0, 0]));
        let square = resize_square(image, 10);
        assert_eq!(square.dimensions(), (10, 10));
        // The centre 20x20 square (source columns 10..30) scaled to 10x10.
        let middle = square.get_pixel(5, 5)[0];
        assert!((18..=22).contains(&middle), "{middle}");
        assert!(square.get_pixel(0, 0)[0] >= 10 && square.get_pixel(9, 0)[0] <= 30);
    }
}
