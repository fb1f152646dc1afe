//! The bundled front end (`frontend/dist`, built by `make frontend`) is served completely:
//! index.html, every asset it references, and client-side routes.
//!
//! `make test` sets `ATOMSERVE_FRONTEND_DIST` and builds the front end first, so there the build
//! must exist; a bare `cargo test` without it skips this file's checks and says so.

mod common;

use common::*;

#[test]
fn bundled_front_end_is_served_with_all_its_assets() {
    let Ok(dist) = std::env::var("ATOMSERVE_FRONTEND_DIST") else {
        eprintln!("ATOMSERVE_FRONTEND_DIST not set: skipping (make test sets it)");
        return;
    };
    let dist = std::path::PathBuf::from(dist);
    assert!(dist.join("index.html").is_file(), "{} has no index.html: run make frontend", dist.display());
    let s = Server::start(&dist, &[]);
    let index = s.get("/");
    assert_eq!(index.status, 200);
    assert_eq!(index.body, std::fs::read(dist.join("index.html")).unwrap());
    let html = index.text();

    // Every src="/..." and href="/..." in index.html must resolve with a sensible type.
    let refs: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.starts_with('/') && s.len() > 1 && !s.starts_with("//"))
        .collect();
    assert!(refs.iter().any(|r| r.starts_with("/assets/") && r.ends_with(".js")), "no script in {html}");
    for r in &refs {
        let resp = s.get(r);
        assert_eq!(resp.status, 200, "{r}");
        assert_eq!(resp.body, std::fs::read(dist.join(&r[1..])).unwrap(), "{r}");
        let ct = resp.header("content-type").unwrap();
        let want = match r.rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml; charset=utf-8",
            "png" => "image/png",
            other => panic!("unexpected asset type {other} in {r}"),
        };
        assert_eq!(ct, want, "{r}");
    }
    // Client-side routes load the app; a missing asset does not.
    assert_eq!(s.get("/some/client/route").body, index.body);
    assert_eq!(s.get("/assets/missing-abc123.js").status, 404);
}
