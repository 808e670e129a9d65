//! Tests of the GPU module.
//!
//! Tests without `#[ignore]` run everywhere. On a machine without CUDA (CI)
//! they prove the no-driver path: nothing panics, `is_available()` is false and
//! `Device::open` reports `NoDriver`. Where a driver library is installed they
//! check the other branch of the same probe instead, so none passes vacuously.
//!
//! Tests marked `#[ignore = "needs a CUDA device"]` need a device; run them
//! with `scripts/gpu-check.sh` (or `cargo test -p vedart-executors --test gpu --
//! --include-ignored`). They fail, rather than skip, when no device is there;
//! the one exception is `vector_add_compiled_with_nvrtc`, which needs NVRTC on
//! top of a device and says so and returns early where NVRTC is missing.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::ffi::CString;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use futures::future::join_all;
use futures::task::ArcWake;
use vedart_executors::gpu::{
    self, Device, DeviceBuffer, GpuErrorKind, HostBuffer, LaunchConfig, Ptx, Stream,
};

/// Library names cudarc tries for `lib` (built for CUDA 12.8) on Linux.
fn candidates(lib: &str) -> Vec<String> {
    let mut names = vec![format!("lib{lib}.so")];
    for suffix in [
        "", "_12", "_128", "_128_0", "_120_8", "_10", "_11", "_12", "_120_0", "_9",
    ] {
        names.push(format!("lib{lib}64{suffix}.so"));
    }
    for version in ["12", "12", "11", "10", "9", "1"] {
        names.push(format!("lib{lib}.so.{version}"));
    }
    names
}

/// Whether the dynamic loader finds `lib` under any name cudarc would try:
/// an independent check of what the module should conclude.
fn library_loads(lib: &str) -> bool {
    candidates(lib).iter().any(|name| {
        let name = CString::new(name.as_str()).expect("no NUL in library names");
        // SAFETY: `name` is a valid C string; the handle, if any, is closed at once.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            false
        } else {
            // SAFETY: `handle` came from the successful dlopen above.
            unsafe { libc::dlclose(handle) };
            true
        }
    })
}

const VECTOR_ADD_SOURCE: &str = r#"
extern "C" __global__ void vector_add(const float* a, const float* b, float* c, unsigned int n) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        c[i] = a[i] + b[i];
    }
}
"#;

/// `c[i] = a[i] + b[i]` for `i < n`, as emitted by LLVM's NVPTX back end
/// (`llc -march=nvptx64 -mcpu=sm_50 -mattr=+ptx60`), so that the GPU tests do
/// not need NVRTC.
const VECTOR_ADD_PTX: &str = r#"
.version 6.0
.target sm_50
.address_size 64

.visible .entry vector_add(
	.param .u64 vector_add_param_0,
	.param .u64 vector_add_param_1,
	.param .u64 vector_add_param_2,
	.param .u32 vector_add_param_3
)
{
	.reg .pred 	%p<2>;
	.reg .b32 	%r<6>;
	.reg .f32 	%f<4>;
	.reg .b64 	%rd<8>;

	mov.u32 	%r1, %ctaid.x;
	mov.u32 	%r2, %ntid.x;
	ld.param.u32 	%r3, [vector_add_param_3];
	mov.u32 	%r4, %tid.x;
	mad.lo.s32 	%r5, %r1, %r2, %r4;
	setp.ge.u32 	%p1, %r5, %r3;
	@%p1 bra 	LBB0_2;
	ld.param.u64 	%rd4, [vector_add_param_0];
	ld.param.u64 	%rd5, [vector_add_param_1];
	ld.param.u64 	%rd6, [vector_add_param_2];
	mul.wide.u32 	%rd7, %r5, 4;
	add.s64 	%rd1, %rd4, %rd7;
	add.s64 	%rd2, %rd5, %rd7;
	add.s64 	%rd3, %rd6, %rd7;
	ld.global.f32 	%f1, [%rd1];
	ld.global.f32 	%f2, [%rd2];
	add.rn.f32 	%f3, %f1, %f2;
	st.global.f32 	[%rd3], %f3;
LBB0_2:
	ret;
}
"#;

// ---------------------------------------------------------------------------
// Everywhere: the probe and the no-driver path.
// ---------------------------------------------------------------------------

#[test]
fn probe_matches_the_installed_driver() {
    if !library_loads("cuda") {
        // The no-driver path: every entry point answers, none panics.
        assert!(!gpu::is_available());
        assert_eq!(gpu::device_count(), 0);
        for ordinal in [0, 1, 7, usize::MAX] {
            let error = Device::open(ordinal).unwrap_err();
            assert!(error.is_no_driver(), "{error:?}");
            assert_eq!(error.kind(), GpuErrorKind::NoDriver);
            assert!(!error.is_no_device() && !error.is_invalid_ordinal());
            assert_eq!(error.driver_code(), None);
            assert!(error.to_string().contains("libcuda"), "{error}");
        }
    } else {
        // A driver library is installed: the probe is consistent either way.
        let count = gpu::device_count();
        assert_eq!(gpu::is_available(), count > 0);
        match Device::open(count) {
            Err(error) if count == 0 => assert!(
                error.is_no_device() || error.driver_code().is_some(),
                "{error:?}"
            ),
            Err(error) => assert!(error.is_invalid_ordinal(), "{error:?}"),
            Ok(device) => panic!("opened ordinal {count} of {count}: {device:?}"),
        }
        if count > 0 {
            let device = Device::open(0).expect("device 0 opens");
            assert_eq!(device.ordinal(), 0);
        }
    }
}

#[test]
fn probing_from_many_threads_agrees_and_never_panics() {
    let answers: Vec<(bool, usize, Option<GpuErrorKind>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    (
                        gpu::is_available(),
                        gpu::device_count(),
                        Device::open(0).err().map(|e| e.kind()),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
}

#[test]
fn compile_matches_the_installed_nvrtc() {
    if !library_loads("nvrtc") {
        assert!(!gpu::compiler_available());
        let error = gpu::compile(VECTOR_ADD_SOURCE).unwrap_err();
        assert!(error.is_no_compiler(), "{error:?}");
        assert_eq!(error.kind(), GpuErrorKind::NoCompiler);
        assert_eq!(error.compile_log(), None);
    } else {
        assert!(gpu::compiler_available());
        let ptx = gpu::compile(VECTOR_ADD_SOURCE).expect("valid source compiles");
        assert!(
            ptx.as_str().contains(".entry vector_add"),
            "{}",
            ptx.as_str()
        );
        let error = gpu::compile("this is not CUDA").unwrap_err();
        assert!(error.is_compile(), "{error:?}");
        assert!(!error.compile_log().unwrap_or_default().is_empty());
    }
}

#[test]
fn nul_bytes_are_invalid_arguments() {
    let error = gpu::compile("__global__ void k() {}\0").unwrap_err();
    assert!(error.is_invalid_argument(), "{error:?}");
    let error = Ptx::from_text("bad\0ptx").unwrap_err();
    assert!(error.is_invalid_argument(), "{error:?}");
    let ptx = Ptx::from_text(VECTOR_ADD_PTX).unwrap();
    assert_eq!(ptx.as_str(), VECTOR_ADD_PTX);
}

#[test]
fn handles_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Device>();
    send_sync::<Stream>();
    send_sync::<DeviceBuffer<f32>>();
    send_sync::<HostBuffer<u8>>();
    send_sync::<gpu::Kernel>();
    send_sync::<gpu::Module>();
    send_sync::<gpu::GpuError>();
    // Futures are spawned onto the runtime's worker threads.
    send::<gpu::GpuFuture<Vec<f32>>>();
    send::<gpu::GpuFuture<DeviceBuffer<i64>>>();
}

#[test]
fn launch_config_covers_every_element() {
    assert_eq!(LaunchConfig::for_elements(0).grid_dim, (1, 1, 1));
    assert_eq!(LaunchConfig::for_elements(1).grid_dim, (1, 1, 1));
    assert_eq!(LaunchConfig::for_elements(256).grid_dim, (1, 1, 1));
    assert_eq!(LaunchConfig::for_elements(257).grid_dim, (2, 1, 1));
    let config = LaunchConfig::for_elements(u32::MAX);
    let threads = u64::from(config.grid_dim.0) * u64::from(config.block_dim.0);
    assert!(threads >= u64::from(u32::MAX));
    assert_eq!(config.shared_mem_bytes, 0);
}

// ---------------------------------------------------------------------------
// With a device (scripts/gpu-check.sh).
// ---------------------------------------------------------------------------

fn device() -> Device {
    Device::open(0).expect("these tests need CUDA device 0")
}

/// Launches `vector_add` on `stream` and returns `a + b`.
fn vector_add(stream: &Stream, kernel: &gpu::Kernel, a: &[f32], b: &[f32]) -> Vec<f32> {
    block_on(async {
        let n = u32::try_from(a.len()).expect("small enough");
        let a = stream.copy_to_device(a)?.await?;
        let b = stream.copy_to_device(b)?.await?;
        let mut c: DeviceBuffer<f32> = stream.alloc_zeros(a.len())?;
        let mut launch = stream.launch_builder(kernel);
        launch.buffer(&a).buffer(&b).buffer_mut(&mut c).arg(&n);
        // SAFETY: `vector_add(const float*, const float*, float*, unsigned int)`
        // gets exactly those arguments and touches only indices below `n`.
        unsafe { launch.launch(LaunchConfig::for_elements(n)) }?.await?;
        stream.copy_to_host(&c)?.await
    })
    .expect("vector add runs")
}

fn check_vector_add(device: &Device, kernel: &gpu::Kernel, label: &str) {
    let stream = device.stream().unwrap();
    for n in [1usize, 255, 256, 257, 1 << 20] {
        let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..n).map(|i| (2 * i) as f32 + 0.5).collect();
        let started = Instant::now();
        let c = vector_add(&stream, kernel, &a, &b);
        let elapsed = started.elapsed();
        assert_eq!(c.len(), n);
        for i in 0..n {
            assert_eq!(c[i], a[i] + b[i], "element {i} of {n}");
        }
        println!("{label}: vector add of {n} floats (copies included) in {elapsed:?}");
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn vector_add_from_ptx() {
    let device = device();
    println!(
        "device 0: {} (compute {:?}, {} MiB)",
        device.name().unwrap(),
        device.compute_capability().unwrap(),
        device.total_memory().unwrap() >> 20
    );
    let module = device
        .load_ptx(&Ptx::from_text(VECTOR_ADD_PTX).unwrap())
        .expect("the PTX loads");
    let kernel = module.kernel("vector_add").unwrap();
    assert_eq!(kernel.name(), "vector_add");
    check_vector_add(&device, &kernel, "ptx");
    let missing = module.kernel("no_such_kernel").unwrap_err();
    assert!(missing.driver_code().is_some(), "{missing:?}");
}

#[test]
#[ignore = "needs a CUDA device"]
fn vector_add_compiled_with_nvrtc() {
    let device = device();
    if !gpu::compiler_available() {
        println!("NVRTC is not installed: skipping the run-time compilation test");
        return;
    }
    let module = device
        .compile(VECTOR_ADD_SOURCE)
        .expect("compiles and loads");
    let kernel = module.kernel("vector_add").unwrap();
    check_vector_add(&device, &kernel, "nvrtc");
}

#[test]
#[ignore = "needs a CUDA device"]
fn copies_round_trip() {
    let device = device();
    let stream = device.stream().unwrap();
    block_on(async {
        for n in [0usize, 1, 3, 4096, (1 << 20) + 7] {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            let on_device = stream.copy_to_device(&bytes)?.await?;
            assert_eq!(on_device.len(), n);
            assert_eq!(stream.copy_to_host(&on_device)?.await?, bytes);

            let longs: Vec<i64> = (0..n as i64).map(|i| i * -3).collect();
            let on_device = stream.copy_to_device(&longs)?.await?;
            assert_eq!(stream.copy_to_host(&on_device)?.await?, longs);

            // Through reusable pinned buffers, in place.
            let doubles: Vec<f64> = (0..n).map(|i| i as f64 / 3.0).collect();
            let src = HostBuffer::from_slice(&device, &doubles)?;
            let mut on_device = stream.alloc_zeros::<f64>(n)?;
            let src = stream.copy_host_to_device(src, &mut on_device)?.await?;
            assert_eq!(&src[..], &doubles[..]);
            let dst = HostBuffer::zeroed(&device, n)?;
            let dst = stream.copy_device_to_host(&on_device, dst)?.await?;
            assert_eq!(&dst[..], &doubles[..]);
        }
        stream.synchronize_async()?.await
    })
    .expect("copies run");
}

#[test]
#[ignore = "needs a CUDA device"]
fn copy_arguments_are_checked() {
    let device = device();
    let stream = device.stream().unwrap();
    let mut on_device = stream.alloc_zeros::<u32>(4).unwrap();
    let host = HostBuffer::<u32>::zeroed(&device, 5).unwrap();
    let error = stream
        .copy_host_to_device(host, &mut on_device)
        .unwrap_err();
    assert!(error.is_invalid_argument(), "{error:?}");
    let host = HostBuffer::<u32>::zeroed(&device, 3).unwrap();
    let error = stream.copy_device_to_host(&on_device, host).unwrap_err();
    assert!(error.is_invalid_argument(), "{error:?}");
    let error = Device::open(gpu::device_count()).unwrap_err();
    assert!(error.is_invalid_ordinal(), "{error:?}");
}

#[test]
#[ignore = "needs a CUDA device"]
fn many_concurrent_stream_futures() {
    let device = device();
    const STREAMS: usize = 48;
    const N: usize = 1 << 16;
    let results = block_on(join_all((0..STREAMS).map(|k| {
        let device = device.clone();
        async move {
            let stream = device.stream()?;
            let data: Vec<u32> = (0..N as u32).map(|i| i ^ k as u32).collect();
            let on_device = stream.copy_to_device(&data)?.await?;
            let back = stream.copy_to_host(&on_device)?.await?;
            stream.synchronize_async()?.await?;
            Ok::<bool, gpu::GpuError>(back == data)
        }
    })));
    for (k, result) in results.into_iter().enumerate() {
        assert!(
            result.expect("stream work succeeds"),
            "stream {k} round trip"
        );
    }
    let stats = device.stream_pool_stats();
    assert!(stats.created <= STREAMS, "{stats:?}");
    assert!(stats.idle <= gpu::MAX_IDLE_STREAMS, "{stats:?}");

    // The same from several threads at once, each with its own executor.
    std::thread::scope(|scope| {
        for t in 0..4u32 {
            let device = device.clone();
            scope.spawn(move || {
                let stream = device.stream().unwrap();
                for round in 0..20u32 {
                    let data = vec![t * 1000 + round; 4096];
                    let back = block_on(async {
                        let on_device = stream.copy_to_device(&data)?.await?;
                        stream.copy_to_host(&on_device)?.await
                    })
                    .unwrap();
                    assert_eq!(back, data);
                }
            });
        }
    });
}

struct Flag(AtomicBool);

impl ArcWake for Flag {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn the_stream_callback_wakes_the_task() {
    let device = device();
    let stream = device.stream().unwrap();
    let data = vec![1u8; 64 << 20];
    let on_device = block_on(stream.copy_to_device(&data).unwrap()).unwrap();
    let mut transfer = stream.copy_to_host(&on_device).unwrap();

    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = futures::task::waker(Arc::clone(&flag));
    let mut cx = Context::from_waker(&waker);
    // Polling never blocks: it answers at once, ready or not.
    let first = std::pin::Pin::new(&mut transfer).poll(&mut cx);
    if let Poll::Ready(result) = first {
        assert_eq!(result.unwrap().len(), data.len());
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !flag.0.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the callback never woke the task"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(transfer.is_complete());
    match std::pin::Pin::new(&mut transfer).poll(&mut cx) {
        Poll::Ready(result) => assert_eq!(result.unwrap(), data),
        Poll::Pending => panic!("woken but not ready"),
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn dropped_futures_release_their_buffers_after_the_stream_passes() {
    let device = device();
    let stream = device.stream().unwrap();
    let on_device = block_on(stream.copy_to_device(&vec![5u16; 32 << 20]).unwrap()).unwrap();
    for _ in 0..4 {
        drop(stream.copy_to_host(&on_device).unwrap());
    }
    block_on(stream.synchronize_async().unwrap()).unwrap();
    // The next operation releases whatever the finished work no longer needs.
    block_on(stream.synchronize_async().unwrap()).unwrap();
    assert_eq!(device.pending_releases(), 0);
}

#[test]
#[ignore = "needs a CUDA device"]
fn streams_are_pooled_and_expose_raw_handles() {
    let device = device();
    let first = device.stream().unwrap();
    let handle = first.raw_handle();
    assert_ne!(
        handle, 0,
        "pooled streams are not the legacy default stream"
    );
    drop(first);
    let again = device.stream().unwrap();
    assert_eq!(again.raw_handle(), handle, "the idle stream was reused");
    let other = device.stream().unwrap();
    assert_ne!(other.raw_handle(), handle);
    assert!(format!("{again:?}").contains("Stream"));
}

#[test]
#[ignore = "needs a CUDA device"]
fn host_device_bandwidth() {
    const BYTES: usize = 256 << 20;
    const ROUNDS: usize = 10;
    let device = device();
    let stream = device.stream().unwrap();
    let len = BYTES / 4;
    let pattern: Vec<u32> = (0..len as u32).collect();
    let mut host = HostBuffer::from_slice(&device, &pattern).unwrap();
    let mut on_device = stream.alloc_zeros::<u32>(len).unwrap();
    let host = block_on(async {
        // Warm up both directions once.
        host = stream.copy_host_to_device(host, &mut on_device)?.await?;
        host = stream.copy_device_to_host(&on_device, host)?.await?;

        let started = Instant::now();
        for _ in 0..ROUNDS {
            host = stream.copy_host_to_device(host, &mut on_device)?.await?;
        }
        let h2d = started.elapsed();
        let started = Instant::now();
        for _ in 0..ROUNDS {
            host = stream.copy_device_to_host(&on_device, host)?.await?;
        }
        let d2h = started.elapsed();
        let gb = (BYTES * ROUNDS) as f64 / 1e9;
        println!(
            "pinned host->device: {:.1} GB/s, device->host: {:.1} GB/s ({} MiB x {ROUNDS})",
            gb / h2d.as_secs_f64(),
            gb / d2h.as_secs_f64(),
            BYTES >> 20
        );
        Ok::<_, gpu::GpuError>(host)
    })
    .unwrap();
    assert_eq!(&host[..], &pattern[..]);

    // The convenience path, staging through freshly pinned memory each time.
    let started = Instant::now();
    let back = block_on(async {
        let on_device = stream.copy_to_device(&pattern)?.await?;
        stream.copy_to_host(&on_device)?.await
    })
    .unwrap();
    println!(
        "staged round trip of {} MiB (pinning included): {:.1} GB/s",
        BYTES >> 20,
        2.0 * BYTES as f64 / 1e9 / started.elapsed().as_secs_f64()
    );
    assert_eq!(back, pattern);
}
