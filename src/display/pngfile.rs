//! `display = "png"`: the board as a PNG file, for a web server, a
//! screenshot script or a machine with no screen.
//!
//! The file is replaced atomically (readers never see half a picture) at
//! most once a second, without fsync: it is a view, not data, and an fsync
//! a second would only wear an SD card.

use std::path::PathBuf;
use std::time::Duration;

use super::{Damage, DisplayError, Screen};
use crate::board::Canvas;
use crate::board::png::replace;

/// The shortest time between two writes of the file (docs/board.md §1).
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// A PNG file of a fixed size.
pub struct PngFile {
    path: PathBuf,
    size: (u32, u32),
}

impl PngFile {
    /// The file at `path`, frames of `size` pixels. Nothing is written yet.
    pub fn new(path: PathBuf, size: (u32, u32)) -> PngFile {
        PngFile { path, size }
    }
}

impl Screen for PngFile {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn present(&mut self, frame: &Canvas, _damage: Damage<'_>) -> Result<(), DisplayError> {
        replace(&self.path, frame, false).map_err(|e| DisplayError::Png(self.path.clone(), e))
    }

    fn min_interval(&self) -> Duration {
        MIN_INTERVAL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_lands_in_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("board.png");
        let mut screen = PngFile::new(path.clone(), (8, 4));
        let mut frame = Canvas::new(8, 4);
        frame.pixels[5] = 0x00ab_cdef;
        screen.present(&frame, Damage::All).unwrap();
        let back = Canvas::decode(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, frame);
        assert_eq!(screen.min_interval(), Duration::from_secs(1));
    }

    #[test]
    fn an_unwritable_path_is_an_error_that_names_it() {
        let mut screen = PngFile::new(PathBuf::from("/nonexistent/dir/board.png"), (2, 2));
        let err = screen.present(&Canvas::new(2, 2), Damage::All).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/dir/board.png"),
            "{err}"
        );
    }
}
