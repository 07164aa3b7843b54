//! A full disk: the coordinator stops with a clear error, the database stays whole with every
//! finished trial, and once there is room again the study resumes to its budget.

use crate::support::*;
use std::process::Command;

/// A tmpfs of `size` mounted at `dir` (needs root), unmounted on drop.
pub struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    pub fn mount(dir: &std::path::Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).status();
        ok.is_ok_and(|s| s.success()).then(|| SmallDisk(dir.to_path_buf()))
    }

    fn grow(&self, size: &str) {
        let ok = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).status().unwrap();
        assert!(ok.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn integrity(db: &std::path::Path) -> String {
    let script =
        "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('pragma integrity_check').fetchone()[0])";
    let out = Command::new("python3").args(["-c", script]).arg(db).output().expect("python3 runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_full_disk_loses_nothing_and_the_study_resumes_when_there_is_room() {
    let s = Study::new(
        "fulldisk",
        &format!(
            "metric = \"loss\"\ndirection = \"minimize\"\n[budget]\ntrials = 60\nparallel = 2\n[params.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n{}",
            script_trial("worker.sh")
        ),
    );
    // Each trial stores 300 reports of four metrics: the disk fills after a few trials.
    s.write(
        "worker.sh",
        "i=0\nwhile [ $i -lt 300 ]; do echo \"{\\\"step\\\": $i, \\\"loss\\\": 1.$i, \\\"a_rather_long_metric_name_one\\\": $i, \\\"a_rather_long_metric_name_two\\\": $i, \\\"a_rather_long_metric_name_three\\\": $i}\"; i=$((i+1)); done\necho '{\"final\": {\"loss\": 0.5}}'\n",
    );
    let mnt = s.dir.path().join("disk");
    let Some(disk) = SmallDisk::mount(&mnt, "6m") else {
        // SAFETY: plain syscall.
        assert_ne!(unsafe { libc::geteuid() }, 0, "running as root, yet tmpfs could not be mounted");
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    };
    let db = mnt.join("sweep.db");
    let sweep =
        |args: &[&str]| Command::new(BIN).arg("--db").arg(&db).args(args).current_dir(s.dir.path()).output().unwrap();
    let run = || sweep(&["run", "study.toml", "--no-progress"]);
    let out = run();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("full"), "the error says the disk is full: {}", text(&out));
    assert_eq!(integrity(&db), "ok");
    let export = || {
        let out = sweep(&["export", "fulldisk", "--format", "json"]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
    };
    let before: Vec<_> = export().into_iter().filter(|t| t["state"] == "complete").collect();
    assert!(!before.is_empty(), "some trials finished before the disk filled");
    disk.grow("64m");
    let out = run();
    assert!(out.status.success(), "{}", text(&out));
    let after = export();
    assert_eq!(counted(&after), 60);
    for t in &before {
        let same = after.iter().find(|a| a["number"] == t["number"]).unwrap();
        assert_eq!((&same["state"], &same["value"]), (&t["state"], &t["value"]), "a finished trial changed");
    }
    assert_eq!(integrity(&db), "ok");
}
