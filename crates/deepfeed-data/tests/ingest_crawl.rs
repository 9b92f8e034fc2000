//! `--crawl` against a local HTTP server started by the test: robots.txt forbids a path, a page
//! links to another host, depth and max-pages limits, a sitemap, a redirect, a missing page.
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use deepfeed_data::ingest::crawl::{CrawlOptions, Robots, Url};
use deepfeed_data::ingest::{ingest, EstimatedTokens, IngestOptions, Inputs, Quiet};
use serde_json::Value;

/// Serves a small site on 127.0.0.1; returns its base URL and the log of requested paths.
fn serve() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    let b = base.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut first = String::new();
            r.read_line(&mut first).unwrap();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap() == 0 || h.trim().is_empty() {
                    break;
                }
            }
            let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
            log2.lock().unwrap().push(path.clone());
            let html = |body: &str| (200, "text/html; charset=utf-8", body.to_string());
            let (status, ct, body) = match path.as_str() {
                "/robots.txt" => (200, "text/plain", "User-agent: *\nDisallow: /private\nAllow: /private/open.html\n".to_string()),
                "/" => html(
                    "<html><body><h1>首页</h1><p>欢迎来到示例商城的帮助中心。</p>\
                     <a href=\"/a.html\">A</a> <a href='private/secret.html'>secret</a> <a href=\"/private/open.html\">open</a>\
                     <a href=\"http://other.example/x.html\">other</a> <a href=\"notes.txt#top\">notes</a> <a href=\"mailto:x@y.z\">mail</a>\
                     <a href=\"/old\">old</a> <a href=\"/missing.html\">missing</a></body></html>",
                ),
                "/a.html" => html("<html><body><h2>退货</h2><p>七天无理由退货。</p><a href=\"deep/c.html\">deeper</a><a href=\"/\">home</a></body></html>"),
                "/deep/c.html" => html("<p>too deep</p>"),
                "/private/open.html" => html("<p>公开的页面。</p>"),
                "/private/secret.html" => html("<p>秘密</p>"),
                "/notes.txt" => (200, "text/plain; charset=utf-8", "纯文本说明：发票在订单页申请。".to_string()),
                "/new" => html("<p>重定向后的页面。</p>"),
                "/sitemap.xml" => (
                    200,
                    "application/xml",
                    format!("<?xml version=\"1.0\"?><urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\"><url><loc>{b}/a.html</loc></url><url><loc>{b}/notes.txt</loc></url></urlset>"),
                ),
                _ => (404, "text/plain", "not found".to_string()),
            };
            let resp = if path == "/old" {
                "HTTP/1.1 301 Moved\r\nLocation: /new\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
            } else {
                format!("HTTP/1.1 {status} X\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            };
            let _ = s.write_all(resp.as_bytes());
        }
    });
    (base, log)
}

fn crawl(seed: &str, depth: usize, max_pages: usize, out: &std::path::Path) -> (deepfeed_data::ingest::IngestReport, Vec<Value>) {
    let c = CrawlOptions { seed: seed.into(), depth, rate: 200.0, max_pages, ..Default::default() };
    let r = ingest(&Inputs { crawl: Some(c), ..Default::default() }, out, &IngestOptions::default(), &EstimatedTokens, &mut Quiet).unwrap();
    let recs = std::fs::read_to_string(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (r, recs)
}

#[test]
fn crawl_respects_robots_depth_and_hosts() {
    let (base, log) = serve();
    let d = tempfile::tempdir().unwrap();
    let (r, recs) = crawl(&base, 1, 100, &d.path().join("out.jsonl"));
    let sources: Vec<&str> = recs.iter().map(|v| v["metadata"]["source"].as_str().unwrap()).collect();
    let page = |p: &str| recs.iter().find(|v| v["metadata"]["source"] == format!("{base}{p}").as_str());
    assert!(page("/").unwrap()["text"].as_str().unwrap().contains("欢迎来到示例商城"), "{sources:?}");
    assert!(page("/a.html").unwrap()["text"].as_str().unwrap().contains("七天无理由退货"));
    assert!(page("/private/open.html").is_some(), "Allow beats the shorter Disallow");
    assert_eq!(page("/notes.txt").unwrap()["metadata"]["format"], "text");
    assert!(page("/new").is_some(), "the same-host redirect is followed");
    assert!(page("/deep/c.html").is_none(), "depth 2 is not fetched");
    let m = &page("/a.html").unwrap()["metadata"];
    assert_eq!(m["sha256"].as_str().unwrap().len(), 64);
    assert!(m["fetched_at"].as_str().unwrap().ends_with('Z'));
    let requested = log.lock().unwrap().clone();
    assert!(!requested.iter().any(|p| p.starts_with("/private/secret")), "robots.txt is obeyed: {requested:?}");
    assert_eq!(requested.iter().filter(|p| *p == "/robots.txt").count(), 1);
    let skipped: Vec<String> = r.errors();
    assert!(skipped.iter().any(|e| e.contains("/private/secret.html") && e.contains("robots.txt")), "{skipped:?}");
    assert!(skipped.iter().any(|e| e.contains("/missing.html") && e.contains("HTTP 404")), "{skipped:?}");
    let summary = r.sources.iter().find(|s| s.format == "crawl").unwrap();
    assert!(summary.notes.iter().any(|n| n.contains("1 link(s) to other hosts not followed")), "{summary:?}");

    // the sitemap gives the seeds; depth 0 follows no links; max-pages stops the crawl
    let (_, recs) = crawl(&format!("{base}/sitemap.xml"), 0, 100, &d.path().join("sm.jsonl"));
    let got: Vec<&str> = recs.iter().map(|v| v["metadata"]["source"].as_str().unwrap()).collect();
    assert_eq!(got, vec![format!("{base}/a.html"), format!("{base}/notes.txt")]);
    let (r, recs) = crawl(&base, 1, 2, &d.path().join("max.jsonl"));
    assert_eq!(recs.len(), 2);
    assert!(r.sources.iter().any(|s| s.notes.iter().any(|n| n.contains("beyond --max-pages 2"))));
    // a file of URLs
    std::fs::write(d.path().join("urls.txt"), format!("# pages\n{base}/a.html\n\n{base}/notes.txt\n")).unwrap();
    let (_, recs) = crawl(d.path().join("urls.txt").to_str().unwrap(), 0, 10, &d.path().join("list.jsonl"));
    assert_eq!(recs.len(), 2);
}

#[test]
fn urls_and_robots_rules() {
    let u = Url::parse("HTTP://Example.COM:80/a/b/c.html?x=1#frag").unwrap();
    assert_eq!(u.to_string(), "http://example.com/a/b/c.html?x=1");
    assert_eq!(u.join("../d.html").unwrap().to_string(), "http://example.com/a/d.html");
    assert_eq!(u.join("./e/").unwrap().to_string(), "http://example.com/a/b/e/");
    assert_eq!(u.join("/root").unwrap().to_string(), "http://example.com/root");
    assert_eq!(u.join("?y=2").unwrap().to_string(), "http://example.com/a/b/c.html?y=2");
    assert_eq!(u.join("//cdn.example.com/x").unwrap().authority, "cdn.example.com");
    assert!(u.join("mailto:a@b.c").is_none() && u.join("javascript:void(0)").is_none() && u.join("#top").is_none());
    let robots = "User-agent: Googlebot\nDisallow: /\n\nUser-agent: *\nDisallow: /tmp\nDisallow: /*.pdf$\nAllow: /tmp/ok\n";
    let r = Robots::parse(robots, "deepfeed");
    assert!(r.allowed("/") && r.allowed("/page.html") && r.allowed("/tmp/ok/1") && r.allowed("/a.pdf?x"));
    assert!(!r.allowed("/tmp/x") && !r.allowed("/docs/a.pdf"));
    let ours = Robots::parse("User-agent: *\nDisallow:\n\nUser-agent: deepfeed\nDisallow: /\n", "deepfeed");
    assert!(!ours.allowed("/anything"), "a group naming us wins over *");
    assert!(Robots::parse("", "deepfeed").allowed("/x"));
}
