//! `jobgate check` as a user runs it: exit codes, the per-route summary, warnings, and
//! errors that name the file, line and column (SPEC §1, §2).

mod support;

use support::run_jobgate;

fn write_config(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jobgate.toml");
    std::fs::write(&path, text).expect("write config");
    let path = path.to_string_lossy().into_owned();
    (dir, path)
}

#[test]
fn shipped_example_passes_with_a_line_per_route() {
    let (code, stdout, stderr) = run_jobgate(&["check", "-c", "config/jobgate.toml"]);
    assert_eq!(code, 0, "{stderr}");
    for route in ["deploy", "artifacts", "artifacts-health"] {
        assert!(
            stdout.lines().any(|line| line.starts_with(route)),
            "no line for {route} in:\n{stdout}"
        );
    }
}

#[test]
fn errors_exit_2_and_name_file_line_and_column() {
    let (_dir, path) = write_config(
        "[[issuer]]\nname = \"github\"\nurl = \"https://token.actions.githubusercontent.com\"\n\n[[route]]\nname = \"api\"\nupstream = \"ftp://10.0.0.1\"\naudience = \"x\"\n[[route.allow]]\nrepository_owner = \"acme\"\n",
    );
    let (code, stdout, stderr) = run_jobgate(&["check", "-c", &path]);
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stderr.contains(&format!("{path}:7:")),
        "the upstream error must name line 7:\n{stderr}"
    );
    assert!(stderr.contains("error:"), "{stderr}");
}

#[test]
fn unpinned_public_github_route_is_refused_and_allowed_with_a_warning_when_asked() {
    let base = "[[issuer]]\nname = \"github\"\nurl = \"https://token.actions.githubusercontent.com\"\n\n[[route]]\nname = \"api\"\nupstream = \"http://10.0.0.1:80\"\naudience = \"x\"\n";
    let (_dir, path) = write_config(&format!(
        "{base}[[route.allow]]\nref = \"refs/heads/main\"\n"
    ));
    let (code, _, stderr) = run_jobgate(&["check", "-c", &path]);
    assert_eq!(code, 2);
    assert!(stderr.contains(&format!("{path}:9:")), "{stderr}");

    let (_dir, path) = write_config(&format!(
        "{base}allow_any_repository = true\n[[route.allow]]\nref = \"refs/heads/main\"\n"
    ));
    let (code, stdout, stderr) = run_jobgate(&["check", "-c", &path]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("warning:"), "{stdout}");
}

#[test]
fn unreadable_file_and_bad_usage_exit_2() {
    let (code, _, stderr) = run_jobgate(&["check", "-c", "/nonexistent/jobgate.toml"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot read"), "{stderr}");
    let (code, _, _) = run_jobgate(&["check", "--no-such-flag"]);
    assert_eq!(code, 2);
}
