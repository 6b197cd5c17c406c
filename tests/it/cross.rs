//! The Raspberry Pi builds under qemu-user: the aarch64 and armv7 `tablo`
//! that `scripts/cross-build` (or `cargo build --target …`) made starts,
//! checks a kiosk config and draws the demo board exactly as the host
//! build does, below the header (whose clock moves between the two runs;
//! the rows fit on one page, so no page turns between them).
//!
//! Each test needs its cross binary (`target/<triple>/{release,debug}/tablo`,
//! the newer of the two) and qemu-user (Debian's `qemu-user`); without
//! either it says what is missing and how to get it, and passes: building
//! for another architecture is not part of `cargo test`.

use std::path::{Path, PathBuf};

use tablo::board::Canvas;

use crate::harness::{Sandbox, TABLO};

/// The demo board's size in these tests: small, so qemu draws it fast.
const SIZE: (u32, u32) = (800, 480);

/// Rows from the top that may differ between two renders a moment apart:
/// the header with its clock (88 px of 1080 at 1920×1080, 51 of 480
/// here), with room for its anti-aliased edge.
const HEADER_ROWS: u32 = 60;

#[test]
fn the_aarch64_build_runs_under_qemu_and_draws_what_the_host_draws() {
    check_cross_build(
        "aarch64-unknown-linux-gnu",
        "qemu-aarch64",
        "/usr/aarch64-linux-gnu",
    );
}

#[test]
fn the_armv7_build_runs_under_qemu_and_draws_what_the_host_draws() {
    check_cross_build(
        "armv7-unknown-linux-gnueabihf",
        "qemu-arm",
        "/usr/arm-linux-gnueabihf",
    );
}

fn check_cross_build(triple: &str, qemu: &str, sysroot: &str) {
    let Some(bin) = cross_binary(triple) else {
        eprintln!(
            "skipped: no {triple} build of tablo under target/ (scripts/cross-build builds it)"
        );
        return;
    };
    let Some(qemu) = on_path(qemu) else {
        eprintln!("skipped: {qemu} is not installed (Debian: apt-get install qemu-user)");
        return;
    };
    let (qemu, bin) = (qemu.to_str().unwrap(), bin.to_str().unwrap());
    let sandbox = Sandbox::new();
    let under_qemu = |args: &[&str]| {
        let mut all = vec!["-L", sysroot, bin];
        all.extend_from_slice(args);
        sandbox.run(qemu, &all)
    };

    let version = under_qemu(&["--version"]);
    version.assert_code(0);
    assert_eq!(
        version.stdout.trim(),
        sandbox.tablo(&["--version"]).assert_code(0).stdout.trim(),
        "{triple}: the cross build is of another version; rebuild it (scripts/cross-build)"
    );

    let kiosk = Path::new(env!("CARGO_MANIFEST_DIR")).join("kiosk/binance.toml");
    under_qemu(&["check", "--config", kiosk.to_str().unwrap()]).assert_code(0);

    // Rows that fit on one page: pages turn with the clock, which would
    // put different rows on the two frames.
    let one_page = sandbox.write(
        "one-page.toml",
        "[[board.rows]]\nsymbol = \"BTCUSDT\"\n\n[[board.rows]]\nsymbol = \"ETHUSDT\"\n\n[[board.rows]]\nsymbol = \"XRPUSDT\"\n",
    );
    let size = format!("{}x{}", SIZE.0, SIZE.1);
    let theirs = sandbox.path().join("cross.png");
    let ours = sandbox.path().join("host.png");
    for (png, run) in [(&theirs, true), (&ours, false)] {
        let args = [
            "render",
            "--demo",
            "--config",
            one_page.to_str().unwrap(),
            "--size",
            &size,
            "--out",
            png.to_str().unwrap(),
        ];
        if run {
            under_qemu(&args).assert_code(0);
        } else {
            sandbox.tablo(&args).assert_code(0);
        }
    }
    let (theirs, ours) = (pixels(&theirs), pixels(&ours));
    assert_eq!(
        theirs.len(),
        ours.len(),
        "{triple}: the frames differ in size"
    );
    let below_header = (HEADER_ROWS * SIZE.0) as usize;
    let differing = theirs[below_header..]
        .iter()
        .zip(&ours[below_header..])
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(
        differing, 0,
        "{triple}: {differing} pixels below the header differ from the host's frame ({TABLO})"
    );
}

/// The newer of `target/<triple>/release/tablo` and `…/debug/tablo`.
fn cross_binary(triple: &str) -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    ["release", "debug"]
        .iter()
        .map(|profile| target.join(triple).join(profile).join("tablo"))
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
}

/// `name` on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A PNG's pixels, `0x00RRGGBB`, checked to be of [`SIZE`].
fn pixels(path: &Path) -> Vec<u32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let frame = Canvas::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        (frame.width, frame.height),
        SIZE,
        "{}: the size asked for",
        path.display()
    );
    frame.pixels
}
