//! The lower bound of a load: the checkpoint file read into the page cache, and every tensor's
//! bytes copied once out of it into fresh buffers.

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use burn_patcher::Checkpoint;

use super::Error;

/// Reads the whole file once (page cache warm-up); returns its size and the seconds it took.
pub fn warm_up(file: &Path) -> Result<(u64, f64), Error> {
    let start = Instant::now();
    let mut reader = std::fs::File::open(file)?;
    let mut buffer = vec![0u8; 16 << 20];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    Ok((total, start.elapsed().as_secs_f64()))
}

/// One copy of every tensor's bytes from the (warm) page cache into fresh buffers, on `threads`
/// threads (tensors dealt round-robin).
///
/// Each tensor is one positioned read (`pread`) of its byte range straight into a fresh
/// zeroed buffer: the kernel's copy out of the page cache is the one copy any reader of the
/// file pays (reading into a scratch buffer first and copying would be two, mapping the file
/// trades it for page faults and a `SIGBUS` if the file is truncated), and the zeroed
/// allocation costs no write of its own. This is the same read the loader does, so the ratio
/// measures what the loader adds to it (conversions, layout, the hand-over to Burn).
pub fn memcpy(dir: &Path, threads: usize) -> Result<Vec<Vec<u8>>, Error> {
    let checkpoint = Checkpoint::open(dir)?;
    let names: Vec<&str> = checkpoint.keys().collect();
    let copy = |name: &str| -> Result<Vec<u8>, Error> {
        let tensor = checkpoint.get(name)?;
        let mut buffer = vec![0u8; tensor.num_bytes()];
        tensor.read_into(&mut buffer)?;
        Ok(buffer)
    };
    if threads == 1 {
        return names.iter().map(|n| copy(n)).collect();
    }
    let mut buffers: Vec<Vec<u8>> = vec![Vec::new(); names.len()];
    std::thread::scope(|scope| -> Result<(), Error> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (names, copy) = (&names, &copy);
                scope.spawn(move || {
                    let mine = (t..names.len()).step_by(threads);
                    mine.map(|i| Ok((i, copy(names[i]).map_err(|e| e.to_string())?)))
                        .collect::<Result<Vec<_>, String>>()
                })
            })
            .collect();
        for handle in handles {
            for (i, buffer) in handle.join().expect("copy thread panicked")? {
                buffers[i] = buffer;
            }
        }
        Ok(())
    })?;
    Ok(buffers)
}
