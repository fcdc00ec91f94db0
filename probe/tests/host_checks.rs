//! Host-side check kinds against real files and processes: `native` (library resolution,
//! ELF dependencies built here with `cc`, dlopen in a child), `env` (dotenv files and
//! `/proc/PID/environ`), and `command` (exit codes, output caps, process-group timeouts).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use postflight_probe::check::command::CommandTarget;
use postflight_probe::check::env::EnvTarget;
use postflight_probe::check::native::{LoaderPaths, NativeTarget, dlopen_child_main};
use postflight_probe::check::{Check, CommandSpec, EnvSpec, NativeSpec, Target};
use postflight_probe::observation::Observation;
use postflight_probe::report::{CheckKind, CheckResult, Outcome};
use postflight_probe::units::{ByteSize, HumanDuration};

const TIMEOUT: Duration = Duration::from_secs(10);

fn check(kind: CheckKind, target: Target) -> Check {
    Check {
        service: "svc".into(),
        name: "host".into(),
        kind,
        interval: Duration::from_secs(30),
        timeout: TIMEOUT,
        repeat: 1,
        conditions: vec![],
        version_from: None,
        target,
    }
}

async fn run_native(target: NativeTarget) -> CheckResult {
    check(CheckKind::Native, Target::Native(target)).run().await
}

/// Loader paths that see nothing but `dirs` (no cache, no config).
fn isolated_loader(root: &Path, dirs: &[&Path]) -> LoaderPaths {
    LoaderPaths {
        cache: root.join("no-ld.so.cache"),
        conf: root.join("no-ld.so.conf"),
        default_dirs: dirs.iter().map(|d| d.to_path_buf()).collect(),
    }
}

/// Compile with the system C compiler in `dir`; the test fails with cc's output otherwise.
fn cc(dir: &Path, args: &[&str]) {
    let output = Command::new("cc")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("cc runs");
    assert!(
        output.status.success(),
        "cc {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Build `dir/name` as a shared library with soname `name` from `source`, linked with
/// `link` (e.g. `["-L", "x", "-lpfdemo"]`).
fn shared_lib(dir: &Path, name: &str, source: &str, link: &[&str]) -> PathBuf {
    let c_file = format!("{name}.c");
    std::fs::write(dir.join(&c_file), source).unwrap();
    let soname = format!("-Wl,-soname,{name}");
    let mut args = vec!["-shared", "-fPIC", "-o", name, &soname, &c_file];
    args.extend_from_slice(link);
    cc(dir, &args);
    dir.join(name)
}

/// libpfdemo.so in `dir`.
fn demo_lib(dir: &Path) -> PathBuf {
    shared_lib(
        dir,
        "libpfdemo.so",
        "int pfdemo(void) { return 42; }\n",
        &[],
    )
}

/// A program in `dir` that calls pfdemo() from `libdir/libpfdemo.so`, plus extra link args.
fn demo_program(dir: &Path, libdir: &Path, extra: &[&str]) -> PathBuf {
    std::fs::write(
        dir.join("main.c"),
        "int pfdemo(void);\nint main(void) { return pfdemo() == 42 ? 0 : 1; }\n",
    )
    .unwrap();
    let libdir_arg = format!("-L{}", libdir.display());
    let mut args = vec!["-o", "prog", "main.c", &libdir_arg, "-lpfdemo"];
    args.extend_from_slice(extra);
    cc(dir, &args);
    dir.join("prog")
}

fn native(spec: NativeSpec) -> NativeTarget {
    NativeTarget::new(&spec).unwrap()
}

async fn observe_native(target: &NativeTarget) -> Observation {
    target.observe(TIMEOUT).await.unwrap()
}

// ---------------------------------------------------------------- native

#[tokio::test]
async fn libc_resolves_through_the_system_loader_paths() {
    let target = native(NativeSpec {
        libraries: vec!["libc.so.6".into()],
        ..Default::default()
    });
    let result = run_native(target).await;
    assert_eq!(result.outcome, Outcome::Pass, "{result:?}");
    assert!(result.facts.missing.is_empty());
}

#[tokio::test]
async fn unknown_library_is_named_in_missing_with_where_the_loader_looked() {
    let spec = NativeSpec {
        libraries: vec!["libc.so.6".into(), "libpostflight-nope.so.9".into()],
        ..Default::default()
    };
    let observation = observe_native(&native(spec.clone())).await;
    assert_eq!(observation.missing, ["libpostflight-nope.so.9"]);
    let detail = observation.detail.unwrap();
    assert!(detail.contains("searched /etc/ld.so.cache"), "{detail}");
    assert!(detail.contains("/usr/lib"), "{detail}");

    let result = run_native(native(spec)).await;
    assert_eq!(result.outcome, Outcome::Fail);
    assert_eq!(result.facts.missing, ["libpostflight-nope.so.9"]);
    assert!(
        result
            .reason
            .unwrap()
            .starts_with("missing: libpostflight-nope.so.9 (searched")
    );
}

#[tokio::test]
async fn dangling_symlink_in_an_extra_dir_counts_as_missing() {
    let root = tempfile::tempdir().unwrap();
    let extra = root.path().join("extra");
    std::fs::create_dir(&extra).unwrap();
    std::os::unix::fs::symlink(
        root.path().join("gone/libghost.so.1"),
        extra.join("libghost.so.1"),
    )
    .unwrap();
    let libs = root.path().join("libs");
    std::fs::create_dir(&libs).unwrap();
    demo_lib(&libs);
    std::os::unix::fs::symlink(libs.join("libpfdemo.so"), extra.join("libpfdemo.so")).unwrap();

    let spec = NativeSpec {
        libraries: vec!["libghost.so.1".into(), "libpfdemo.so".into()],
        extra_dirs: vec![extra.clone()],
        ..Default::default()
    };
    let target = native(spec).with_loader_paths(isolated_loader(root.path(), &[]));
    let observation = observe_native(&target).await;
    assert_eq!(
        observation.missing,
        ["libghost.so.1"],
        "a live symlink counts, a dangling one does not"
    );
    assert!(
        observation
            .detail
            .unwrap()
            .contains(&format!("extra_dirs {}", extra.display()))
    );
}

#[tokio::test]
async fn elf_dependency_is_found_only_where_the_loader_would_look() {
    let root = tempfile::tempdir().unwrap();
    let libdir = root.path().join("lib");
    std::fs::create_dir(&libdir).unwrap();
    demo_lib(&libdir);
    let program = demo_program(root.path(), &libdir, &[]);

    let without_dir = NativeSpec {
        elf: Some(program.clone()),
        ..Default::default()
    };
    let observation = observe_native(&native(without_dir.clone())).await;
    assert_eq!(observation.missing, ["libpfdemo.so"]);
    assert!(
        observation
            .detail
            .unwrap()
            .contains(&format!("libpfdemo.so needed by {}", program.display()))
    );

    let with_dir = NativeSpec {
        extra_dirs: vec![libdir.clone()],
        ..without_dir
    };
    let result = run_native(native(with_dir.clone())).await;
    assert_eq!(result.outcome, Outcome::Pass, "{result:?}");

    std::fs::remove_file(libdir.join("libpfdemo.so")).unwrap();
    let result = run_native(native(with_dir)).await;
    assert_eq!(result.outcome, Outcome::Fail);
    assert_eq!(result.facts.missing, ["libpfdemo.so"]);
}

#[tokio::test]
async fn origin_relative_runpath_of_the_elf_is_searched() {
    let root = tempfile::tempdir().unwrap();
    let libdir = root.path().join("lib");
    std::fs::create_dir(&libdir).unwrap();
    demo_lib(&libdir);
    demo_program(root.path(), &libdir, &["-Wl,-rpath,$ORIGIN/lib"]);
    let observation = observe_native(&native(NativeSpec {
        elf: Some(root.path().join("prog")),
        ..Default::default()
    }))
    .await;
    assert!(observation.missing.is_empty(), "{:?}", observation.detail);
}

#[tokio::test]
async fn transitive_dependency_missing_names_the_library_that_needs_it() {
    let root = tempfile::tempdir().unwrap();
    let gone = root.path().join("gone");
    let libdir = root.path().join("lib");
    std::fs::create_dir_all(&gone).unwrap();
    std::fs::create_dir_all(&libdir).unwrap();
    demo_lib(&gone);
    let gone_arg = format!("-L{}", gone.display());
    let outer = shared_lib(
        &libdir,
        "libpfouter.so",
        "int pfdemo(void);\nint pfouter(void) { return pfdemo(); }\n",
        &[&gone_arg, "-lpfdemo"],
    );
    std::fs::write(
        root.path().join("main.c"),
        "int pfouter(void);\nint main(void) { return pfouter(); }\n",
    )
    .unwrap();
    let libdir_arg = format!("-L{}", libdir.display());
    cc(
        root.path(),
        &[
            "-o",
            "prog",
            "main.c",
            &libdir_arg,
            "-lpfouter",
            &format!("-Wl,-rpath-link,{}", gone.display()),
        ],
    );
    std::fs::remove_dir_all(&gone).unwrap();

    let spec = NativeSpec {
        elf: Some(root.path().join("prog")),
        extra_dirs: vec![libdir],
        ..Default::default()
    };
    let observation = observe_native(&native(spec)).await;
    assert_eq!(observation.missing, ["libpfdemo.so"]);
    assert!(
        observation
            .detail
            .unwrap()
            .contains(&format!("libpfdemo.so needed by {}", outer.display()))
    );
}

#[tokio::test]
async fn dependency_cycle_between_libraries_terminates() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let link_dir = format!("-L{}", dir.display());
    shared_lib(dir, "libpfa.so", "int pfa(void) { return 1; }\n", &[]);
    shared_lib(
        dir,
        "libpfb.so",
        "int pfa(void);\nint pfb(void) { return pfa(); }\n",
        &[&link_dir, "-lpfa"],
    );
    shared_lib(
        dir,
        "libpfa.so",
        "int pfb(void);\nint pfa(void) { return 1; }\nint pfa2(void) { return pfb(); }\n",
        &[&link_dir, "-lpfb"],
    );
    let spec = NativeSpec {
        elf: Some(dir.join("libpfb.so")),
        extra_dirs: vec![dir.to_path_buf()],
        ..Default::default()
    };
    let observation = observe_native(&native(spec)).await;
    assert!(observation.missing.is_empty(), "{:?}", observation.detail);
}

#[tokio::test]
async fn malformed_elf_is_an_error_result_not_a_panic() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("broken");
    let mut bytes = b"\x7fELF\x02\x01\x01".to_vec();
    bytes.resize(64, 0xff);
    std::fs::write(&path, bytes).unwrap();
    let result = run_native(native(NativeSpec {
        elf: Some(path.clone()),
        ..Default::default()
    }))
    .await;
    assert_eq!(result.outcome, Outcome::Error);
    assert!(
        result
            .reason
            .unwrap()
            .starts_with(&format!("cannot read ELF file {}", path.display()))
    );
}

/// ld.so.cache flags for this host and for some other architecture.
fn host_and_foreign_cache_flags() -> (i32, i32) {
    if cfg!(target_arch = "aarch64") {
        (0x0a03, 0x0303)
    } else {
        (0x0303, 0x0a03)
    }
}

/// A new-format (`glibc-ld.so.cache1.1`) cache holding `entries`, little-endian.
fn ld_cache_bytes(entries: &[(i32, &str, &Path)]) -> Vec<u8> {
    let strings_at = 48 + 24 * entries.len();
    let mut strings = Vec::new();
    let mut table = Vec::new();
    for (flags, soname, path) in entries {
        let key = (strings_at + strings.len()) as u32;
        strings.extend_from_slice(soname.as_bytes());
        strings.push(0);
        let value = (strings_at + strings.len()) as u32;
        strings.extend_from_slice(path.to_str().unwrap().as_bytes());
        strings.push(0);
        table.extend_from_slice(&flags.to_le_bytes());
        table.extend_from_slice(&key.to_le_bytes());
        table.extend_from_slice(&value.to_le_bytes());
        table.extend_from_slice(&[0; 12]);
    }
    let mut out = b"glibc-ld.so.cache1.1".to_vec();
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
    out.push(2);
    out.resize(48, 0);
    out.extend_from_slice(&table);
    out.extend_from_slice(&strings);
    out
}

#[tokio::test]
async fn synthetic_cache_and_conf_includes_are_searched_for_this_architecture_only() {
    let root = tempfile::tempdir().unwrap();
    let store = root.path().join("store");
    let conf_lib = root.path().join("conf-lib");
    let conf_d = root.path().join("ld.so.conf.d");
    for dir in [&store, &conf_lib, &conf_d] {
        std::fs::create_dir(dir).unwrap();
    }
    let real = demo_lib(&store);
    std::fs::copy(&real, store.join("libcached.so.1")).unwrap();
    std::fs::copy(&real, store.join("libforeign.so.1")).unwrap();
    std::fs::copy(&real, conf_lib.join("libconf.so.1")).unwrap();
    let (host, foreign) = host_and_foreign_cache_flags();
    let cache = ld_cache_bytes(&[
        (host, "libcached.so.1", &store.join("libcached.so.1")),
        (foreign, "libforeign.so.1", &store.join("libforeign.so.1")),
    ]);
    std::fs::write(root.path().join("ld.so.cache"), cache).unwrap();
    std::fs::write(
        root.path().join("ld.so.conf"),
        "include ld.so.conf.d/*.conf\n",
    )
    .unwrap();
    std::fs::write(
        conf_d.join("app.conf"),
        format!("# app\n{}\n", conf_lib.display()),
    )
    .unwrap();

    let paths = LoaderPaths {
        cache: root.path().join("ld.so.cache"),
        conf: root.path().join("ld.so.conf"),
        default_dirs: vec![],
    };
    let spec = NativeSpec {
        libraries: vec![
            "libcached.so.1".into(),
            "libforeign.so.1".into(),
            "libconf.so.1".into(),
        ],
        ..Default::default()
    };
    let observation = observe_native(&native(spec).with_loader_paths(paths)).await;
    assert_eq!(
        observation.missing,
        ["libforeign.so.1"],
        "{:?}",
        observation.detail
    );
}

// ---------------------------------------------------------------- native: dlopen

const DLOPEN_CHILD_ARGS: &str = "POSTFLIGHT_TEST_DLOPEN_ARGS_FILE";

/// An executable script standing in for the probe binary as the dlopen child.
fn child_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Both sides of the dlopen protocol. The probe's `main` is not wired to `__dlopen` in this
/// crate's tests, so this test binary plays the child: a script receives
/// `__dlopen <paths>`, writes the paths to a file and re-runs this very test, which, seeing
/// the file named in its environment, calls `dlopen_child_main` and exits.
#[test]
fn dlopen_in_a_child_reports_libraries_whose_dependencies_are_gone() {
    if let Ok(args_file) = std::env::var(DLOPEN_CHILD_ARGS) {
        let paths: Vec<String> = std::fs::read_to_string(args_file)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        std::process::exit(dlopen_child_main(&paths));
    }
    let root = tempfile::tempdir().unwrap();
    let gone = root.path().join("gone");
    let libdir = root.path().join("lib");
    std::fs::create_dir_all(&gone).unwrap();
    std::fs::create_dir_all(&libdir).unwrap();
    demo_lib(&gone);
    let gone_arg = format!("-L{}", gone.display());
    shared_lib(
        &libdir,
        "libpfneedsgone.so",
        "int pfdemo(void);\nint pfn(void) { return pfdemo(); }\n",
        &[&gone_arg, "-lpfdemo"],
    );
    std::fs::remove_dir_all(&gone).unwrap();

    let args_file = root.path().join("child-args");
    let test_exe = std::env::current_exe().unwrap();
    let script = child_script(
        root.path(),
        "probe-as-child",
        &format!(
            "[ \"$1\" = __dlopen ] || exit 97\nshift\nprintf '%s\\n' \"$@\" > '{args}'\n\
             {var}='{args}' exec '{exe}' --exact host_checks::dlopen_in_a_child_reports_libraries_whose_dependencies_are_gone \
             --nocapture --test-threads=1",
            args = args_file.display(),
            var = DLOPEN_CHILD_ARGS,
            exe = test_exe.display(),
        ),
    );
    let spec = NativeSpec {
        libraries: vec!["libc.so.6".into(), "libpfneedsgone.so".into()],
        extra_dirs: vec![libdir],
        dlopen: true,
        ..Default::default()
    };
    let target = native(spec).with_dlopen_executable(script);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let observation = runtime.block_on(target.observe(TIMEOUT)).unwrap();
    assert_eq!(
        observation.missing,
        ["libpfneedsgone.so"],
        "{:?}",
        observation.detail
    );
    let detail = observation.detail.unwrap();
    assert!(
        detail.contains("dlopen libpfneedsgone.so: libpfdemo.so: cannot open shared object file"),
        "{detail}"
    );
}

fn libc_with_dlopen() -> NativeSpec {
    NativeSpec {
        libraries: vec!["libc.so.6".into()],
        dlopen: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn dlopen_child_that_cannot_start_is_an_error() {
    let target =
        native(libc_with_dlopen()).with_dlopen_executable("/nonexistent/postflight-probe".into());
    let error = target.observe(TIMEOUT).await.unwrap_err();
    assert_eq!(
        error.reason,
        "cannot run the dlopen child `/nonexistent/postflight-probe`: No such file or directory"
    );
}

#[tokio::test]
async fn dlopen_child_that_exits_without_reporting_fails_each_library() {
    let root = tempfile::tempdir().unwrap();
    let script = child_script(
        root.path(),
        "silent",
        "echo 'constructor exploded' >&2\nexit 3",
    );
    let observation = native(libc_with_dlopen())
        .with_dlopen_executable(script)
        .observe(TIMEOUT)
        .await
        .unwrap();
    assert_eq!(observation.missing, ["libc.so.6"]);
    let detail = observation.detail.unwrap();
    assert!(
        detail.contains("dlopen libc.so.6: dlopen child exited with code 3 before reporting on it (constructor exploded)"),
        "{detail}"
    );
}

#[tokio::test]
async fn dlopen_child_that_hangs_is_killed_at_the_timeout() {
    let root = tempfile::tempdir().unwrap();
    let script = child_script(root.path(), "hang", "exec sleep 30");
    let target = native(libc_with_dlopen()).with_dlopen_executable(script);
    let started = Instant::now();
    let error = target
        .observe(Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        error.reason.starts_with("dlopen child timed out after"),
        "{}",
        error.reason
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

// ---------------------------------------------------------------- env

async fn run_env(spec: &EnvSpec) -> (Check, CheckResult) {
    let check = check(CheckKind::Env, Target::Env(EnvTarget::new(spec).unwrap()));
    let result = check.run().await;
    (check, result)
}

/// A child process killed and reaped when the test ends.
struct RunningChild(std::process::Child);

impl Drop for RunningChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A copy of `sleep` named `name`, started with `args` and environment `vars`.
fn sleeper(dir: &Path, name: &str, arg0: Option<&str>, vars: &[(&str, &str)]) -> RunningChild {
    use std::os::unix::process::CommandExt;
    let program = dir.join(name);
    let sleep = Command::new("sh")
        .args(["-c", "command -v sleep"])
        .output()
        .unwrap();
    std::fs::copy(String::from_utf8(sleep.stdout).unwrap().trim(), &program).unwrap();
    let mut command = Command::new(&program);
    command.arg("30").env_clear().envs(vars.iter().copied());
    if let Some(arg0) = arg0 {
        command.arg0(arg0);
    }
    // A parallel test's fork may briefly hold the copied file open for writing
    // ("Text file busy"); retry a bounded number of times.
    let mut attempts = 0;
    let child = loop {
        match command.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 100 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            spawned => break spawned.unwrap(),
        }
    };
    // Ready once the kernel shows the new program's environment (the exec completed).
    let environ = format!("/proc/{}/environ", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !vars.is_empty()
        && std::fs::read(&environ)
            .map(|e| e.is_empty())
            .unwrap_or(true)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    RunningChild(child)
}

#[tokio::test]
async fn env_file_in_every_dotenv_form_reports_absent_and_empty_names() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join(".env");
    std::fs::write(
        &file,
        "# butler-tax\n\nMONGODB_URI=mongodb://localhost/x\nexport INTERNAL_SERVICE_TOKEN='tok'\n\
         ANTHROPIC_API_KEY = \"k k\"\nGOOGLE_API_KEY=g # inline comment\nEMPTY_ONE=\nQUOTED_EMPTY=\"\"\n",
    )
    .unwrap();
    let required = [
        "MONGODB_URI",
        "INTERNAL_SERVICE_TOKEN",
        "ANTHROPIC_API_KEY",
        "GOOGLE_API_KEY",
        "MISSING_ONE",
    ]
    .into_iter()
    .chain(["EMPTY_ONE", "QUOTED_EMPTY"])
    .map(String::from)
    .collect();
    let spec = EnvSpec {
        file: Some(file.clone()),
        required,
        ..Default::default()
    };
    let observation = EnvTarget::new(&spec)
        .unwrap()
        .observe(TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        observation.missing,
        ["MISSING_ONE", "EMPTY_ONE", "QUOTED_EMPTY"]
    );
    assert_eq!(
        observation.detail.unwrap(),
        format!(
            "absent: MISSING_ONE; empty: EMPTY_ONE, QUOTED_EMPTY; read from {}",
            file.display()
        )
    );
    let (_, result) = run_env(&spec).await;
    assert_eq!(result.outcome, Outcome::Fail);
    assert_eq!(
        result.facts.missing,
        ["MISSING_ONE", "EMPTY_ONE", "QUOTED_EMPTY"]
    );
}

#[tokio::test]
async fn env_of_a_process_is_read_through_its_pidfile() {
    let root = tempfile::tempdir().unwrap();
    let child = sleeper(
        root.path(),
        "pf-pidfile-sleep",
        None,
        &[("PF_SET", "1"), ("PF_EMPTY", "")],
    );
    let pidfile = root.path().join("svc.pid");
    std::fs::write(&pidfile, format!("{}\n", child.0.id())).unwrap();
    let spec = EnvSpec {
        pidfile: Some(pidfile),
        required: vec!["PF_SET".into(), "PF_EMPTY".into(), "PF_ABSENT".into()],
        ..Default::default()
    };
    let observation = EnvTarget::new(&spec)
        .unwrap()
        .observe(TIMEOUT)
        .await
        .unwrap();
    assert_eq!(observation.missing, ["PF_EMPTY", "PF_ABSENT"]);
    assert!(
        observation
            .detail
            .unwrap()
            .contains(&format!("read from process {}", child.0.id()))
    );
}

#[tokio::test]
async fn env_of_a_process_is_found_by_comm_and_by_argv0() {
    let root = tempfile::tempdir().unwrap();
    // Short name, argv[0] changed: only /proc/PID/comm can match.
    let by_comm = format!("pfc{}", std::process::id());
    let _first = sleeper(
        root.path(),
        &by_comm,
        Some("something-else"),
        &[("PF_COMM", "1")],
    );
    // Name longer than comm's 15 bytes: only argv[0]'s file name can match.
    let by_argv0 = format!("postflight-env-argv0-{}", std::process::id());
    let _second = sleeper(root.path(), &by_argv0, None, &[("PF_ARGV0", "1")]);

    for (name, var) in [(by_comm, "PF_COMM"), (by_argv0, "PF_ARGV0")] {
        let spec = EnvSpec {
            process: Some(name.clone()),
            required: vec![var.into()],
            ..Default::default()
        };
        let observation = EnvTarget::new(&spec)
            .unwrap()
            .observe(TIMEOUT)
            .await
            .unwrap();
        assert!(
            observation.missing.is_empty(),
            "{name}: {:?}",
            observation.detail
        );
    }
}

#[tokio::test]
async fn env_sources_that_cannot_be_read_are_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    let stale = root.path().join("stale.pid");
    std::fs::write(&stale, "999999999\n").unwrap();
    let cases = [
        (
            EnvSpec { process: Some("postflight-no-such-process".into()), ..Default::default() },
            "no running process named `postflight-no-such-process` (matched /proc/*/comm and argv[0])".to_string(),
        ),
        (
            EnvSpec { pidfile: Some(stale.clone()), ..Default::default() },
            format!("process 999999999 from pidfile {} is not running (stale pidfile?)", stale.display()),
        ),
        (
            EnvSpec { file: Some(root.path().join("nope.env")), ..Default::default() },
            format!("cannot read env file {}: No such file or directory", root.path().join("nope.env").display()),
        ),
    ];
    for (mut spec, expected) in cases {
        spec.required = vec!["A".into()];
        let (_, result) = run_env(&spec).await;
        assert_eq!(result.outcome, Outcome::Error);
        assert_eq!(result.reason.unwrap(), expected);
    }
}

#[tokio::test]
async fn secret_values_appear_nowhere_in_results_or_debug_output() {
    const SECRET: &str = "s3cr3t-TOKEN-value-1234";
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join(".env");
    std::fs::write(
        &file,
        format!("TOKEN={SECRET}\nOTHER=\"{SECRET}\"\nEMPTY=\n"),
    )
    .unwrap();
    let child = sleeper(
        root.path(),
        "pf-secret-sleep",
        None,
        &[("TOKEN", SECRET), ("EMPTY", "")],
    );
    let pidfile = root.path().join("svc.pid");
    std::fs::write(&pidfile, child.0.id().to_string()).unwrap();

    let required = vec![
        "TOKEN".to_string(),
        "OTHER".into(),
        "EMPTY".into(),
        "ABSENT".into(),
    ];
    for spec in [
        EnvSpec {
            file: Some(file.clone()),
            required: required.clone(),
            ..Default::default()
        },
        EnvSpec {
            pidfile: Some(pidfile.clone()),
            required: required.clone(),
            ..Default::default()
        },
    ] {
        let (check, result) = run_env(&spec).await;
        assert_eq!(result.outcome, Outcome::Fail);
        assert!(!result.facts.missing.is_empty());
        let json = serde_json::to_string(&result).unwrap();
        let reason = result.reason.clone().unwrap();
        for text in [json, format!("{result:?}"), format!("{check:?}"), reason] {
            assert!(!text.contains(SECRET), "secret leaked into: {text}");
            assert!(
                !text.contains("s3cr3t"),
                "part of the secret leaked into: {text}"
            );
        }
    }
}

// ---------------------------------------------------------------- command

fn command(argv: &[&str]) -> CommandSpec {
    CommandSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn observe_command(spec: &CommandSpec) -> Observation {
    CommandTarget::new(spec)
        .unwrap()
        .observe(TIMEOUT)
        .await
        .unwrap()
}

async fn run_command(spec: &CommandSpec) -> CheckResult {
    check(
        CheckKind::Command,
        Target::Command(CommandTarget::new(spec).unwrap()),
    )
    .run()
    .await
}

#[tokio::test]
async fn command_exit_zero_passes_with_output_captured() {
    let spec = command(&["sh", "-c", "echo '(head)'; echo warning >&2"]);
    let observation = observe_command(&spec).await;
    assert_eq!(observation.exit, Some(0));
    assert_eq!(observation.stdout.as_deref(), Some("(head)\n"));
    assert_eq!(observation.stderr.as_deref(), Some("warning\n"));
    assert_eq!(observation.detail, None);
    let result = run_command(&spec).await;
    assert_eq!(
        (result.outcome, result.facts.exit),
        (Outcome::Pass, Some(0))
    );
}

#[tokio::test]
async fn command_exit_code_and_signal_are_reported() {
    assert_eq!(
        observe_command(&command(&["sh", "-c", "exit 3"]))
            .await
            .exit,
        Some(3)
    );
    assert_eq!(
        run_command(&command(&["sh", "-c", "exit 3"]))
            .await
            .facts
            .exit,
        Some(3)
    );
    assert_eq!(
        observe_command(&command(&["sh", "-c", "kill -TERM $$"]))
            .await
            .exit,
        Some(-15)
    );
}

#[tokio::test]
async fn command_runs_in_its_cwd_with_its_extra_env() {
    let root = tempfile::tempdir().unwrap();
    let mut spec = command(&["sh", "-c", "pwd; echo \"$PF_EXTRA\""]);
    spec.cwd = Some(root.path().to_path_buf());
    spec.env.insert("PF_EXTRA".into(), "extra-value".into());
    let cwd = std::fs::canonicalize(root.path()).unwrap();
    assert_eq!(
        observe_command(&spec).await.stdout.unwrap(),
        format!("{}\nextra-value\n", cwd.display())
    );

    spec.cwd = Some(root.path().join("missing"));
    let error = CommandTarget::new(&spec)
        .unwrap()
        .observe(TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        error.reason.contains("working directory"),
        "{}",
        error.reason
    );
}

#[tokio::test]
async fn missing_program_is_an_error_naming_it() {
    let result = run_command(&command(&["postflight-no-such-program", "--version"])).await;
    assert_eq!(result.outcome, Outcome::Error);
    assert_eq!(
        result.reason.unwrap(),
        "cannot run `postflight-no-such-program`: No such file or directory"
    );
}

#[tokio::test]
async fn output_beyond_the_cap_is_discarded_without_blocking_the_child() {
    let mut spec = command(&[
        "sh",
        "-c",
        "head -c 1000000 /dev/zero | tr '\\0' a; echo done >&2",
    ]);
    spec.max_output = Some(ByteSize(1024));
    let observation = observe_command(&spec).await;
    assert_eq!(
        observation.exit,
        Some(0),
        "the child finished although nobody kept its output"
    );
    let stdout = observation.stdout.unwrap();
    assert_eq!(
        stdout,
        format!(
            "{}\n[truncated: 1024 of 1000000 bytes shown]",
            "a".repeat(1024)
        )
    );
    assert_eq!(observation.stderr.as_deref(), Some("done\n"));
    assert_eq!(
        observation.detail.as_deref(),
        Some("stdout truncated to 1024 of 1000000 bytes")
    );
}

/// True once `pid` has exited (gone from /proc, or a zombie nobody reaped yet).
fn has_exited(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn timeout_kills_the_child_and_its_grandchild() {
    let root = tempfile::tempdir().unwrap();
    let pidfile = root.path().join("grandchild.pid");
    let script = format!("sleep 30 & echo $! > '{}'; wait", pidfile.display());
    let mut spec = command(&["sh", "-c", &script]);
    spec.timeout = Some(HumanDuration(Duration::from_secs(2)));

    let started = Instant::now();
    let error = CommandTarget::new(&spec)
        .unwrap()
        .observe(TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(error.reason, "timeout after 2s (killed process group)");
    assert!(started.elapsed() < Duration::from_secs(10));

    let grandchild: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has_exited(grandchild) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        has_exited(grandchild),
        "grandchild {grandchild} survived the timeout"
    );
}
