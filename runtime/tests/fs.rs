//! vedart::fs: round trips through the blocking pool — whole-file helpers,
//! File reads / writes / seeks, directories, errors.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::collections::BTreeSet;
use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::Duration;

use futures::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use vedart::fs::{self, File, OpenOptions};
use vedart::time::timeout;

/// A fresh directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("vedart-fs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run<F: std::future::Future<Output = std::io::Result<()>> + Send + 'static>(test: F) {
    let rt = vedart::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        timeout(Duration::from_secs(30), test)
            .await
            .expect("watchdog: the test hung")
            .unwrap();
    });
}

/// Bytes that differ at every offset (a misplaced chunk shows).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn whole_file_helpers_round_trip() {
    let dir = TempDir::new("whole");
    let path = dir.0.join("a.txt");
    run(async move {
        fs::write(&path, "héllo").await?;
        assert_eq!(fs::read_to_string(&path).await?, "héllo");
        assert_eq!(fs::read(&path).await?, "héllo".as_bytes());
        assert_eq!(fs::metadata(&path).await?.len(), 6);
        let copy = path.with_extension("copy");
        assert_eq!(fs::copy(&path, &copy).await?, 6);
        let moved = path.with_extension("moved");
        fs::rename(&copy, &moved).await?;
        assert_eq!(fs::read(&moved).await?, "héllo".as_bytes());
        fs::remove_file(&moved).await?;
        assert_eq!(
            fs::metadata(&moved).await.unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        fs::write(&path, [0xff, 0xfe]).await?;
        assert_eq!(
            fs::read_to_string(&path).await.unwrap_err().kind(),
            std::io::ErrorKind::InvalidData
        );
        Ok(())
    });
}

#[test]
fn a_file_larger_than_one_write_and_one_read_round_trips() {
    let dir = TempDir::new("large");
    let path = dir.0.join("big.bin");
    run(async move {
        let data = pattern(5 * 1024 * 1024 + 17); // > the 2 MiB write and 16 KiB read chunks
        let mut file = File::create(&path).await?;
        file.write_all(&data).await?;
        file.flush().await?;
        assert_eq!(file.metadata().await?.len(), data.len() as u64);
        drop(file);

        let mut back = Vec::new();
        File::open(&path).await?.read_to_end(&mut back).await?;
        assert!(back == data, "the contents differ");

        // Small reads cross the read-ahead boundaries correctly.
        let mut file = File::open(&path).await?;
        let mut chunk = [0u8; 1000];
        let mut total = Vec::new();
        loop {
            let n = file.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            total.extend_from_slice(&chunk[..n]);
        }
        assert!(total == data, "chunked reads differ");
        assert_eq!(file.read(&mut chunk).await?, 0, "EOF stays EOF");
        Ok(())
    });
}

#[test]
fn seeks_move_reads_and_writes_past_the_read_ahead() {
    let dir = TempDir::new("seek");
    let path = dir.0.join("s.bin");
    run(async move {
        fs::write(&path, pattern(100_000)).await?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .await?;
        let mut head = [0u8; 10];
        file.read_exact(&mut head).await?; // reads ahead 16 KiB
        assert_eq!(head[..], pattern(10)[..]);
        // The position is the reader's, not the read-ahead's.
        assert_eq!(file.stream_position().await?, 10);
        // A write after a read lands right after what was read.
        file.write_all(b"XYZ").await?;
        file.flush().await?;
        assert_eq!(file.seek(SeekFrom::Current(-3)).await?, 10);
        let mut three = [0u8; 3];
        file.read_exact(&mut three).await?;
        assert_eq!(&three, b"XYZ");
        assert_eq!(file.seek(SeekFrom::End(-1)).await?, 99_999);
        let mut last = [0u8; 1];
        file.read_exact(&mut last).await?;
        assert_eq!(last[0], pattern(100_000)[99_999]);
        file.seek(SeekFrom::Start(5)).await?;
        file.read_exact(&mut head).await?;
        let mut expected = pattern(15);
        expected[10..13].copy_from_slice(b"XYZ");
        assert_eq!(head[..], expected[5..15]);

        file.set_len(12).await?;
        let mut std_file = file.into_std().await?;
        assert_eq!(std::io::Seek::stream_position(&mut std_file)?, 15);
        assert_eq!(fs::metadata(&path).await?.len(), 12);
        Ok(())
    });
}

#[test]
fn read_dir_lists_every_entry_once() {
    let dir = TempDir::new("dir");
    let root = dir.0.clone();
    run(async move {
        fs::create_dir_all(root.join("sub/deeper")).await?;
        let mut expected = BTreeSet::new();
        for i in 0..150 {
            // more than one blocking batch (64)
            let name = format!("f{i:03}");
            fs::write(root.join(&name), [i as u8]).await?;
            expected.insert(name);
        }
        expected.insert("sub".to_owned());
        let mut seen = BTreeSet::new();
        let mut entries = fs::read_dir(&root).await?;
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name().into_string().unwrap();
            assert_eq!(entry.path(), root.join(&name));
            assert_eq!(entry.file_type().await?.is_dir(), name == "sub");
            assert!(seen.insert(name), "an entry came twice");
        }
        assert_eq!(seen, expected);
        assert!(entries.next_entry().await?.is_none());
        fs::remove_dir_all(root.join("sub")).await?;
        assert_eq!(
            fs::read_dir(root.join("sub")).await.unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        Ok(())
    });
}

#[test]
fn many_tasks_write_and_read_their_own_files_at_once() {
    let dir = TempDir::new("many");
    let root = dir.0.clone();
    run(async move {
        let tasks: Vec<_> = (0..16usize)
            .map(|i| {
                let path = root.join(format!("t{i}"));
                vedart::spawn(async move {
                    let data = pattern(10_000 + i);
                    let mut file = File::create(&path).await?;
                    for chunk in data.chunks(777) {
                        file.write_all(chunk).await?;
                    }
                    file.close().await?;
                    assert!(fs::read(&path).await? == data);
                    std::io::Result::Ok(())
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap()?;
        }
        Ok(())
    });
}

#[test]
fn errors_name_the_failure_and_no_runtime_is_needed() {
    let dir = TempDir::new("errors");
    let missing = dir.0.join("missing");
    // Outside any runtime: the global runtime's blocking pool.
    let error = vedart::block_on(File::open(&missing)).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
    let error = vedart::block_on(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.0.as_path()),
    )
    .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::AlreadyExists);
}
