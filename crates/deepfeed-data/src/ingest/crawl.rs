//! `--crawl`: fetches web pages and ingests their text. The seed is a URL, a file of URLs (one a
//! line, `#` comments), or a sitemap (`sitemap.xml` file or URL; sitemap indexes are followed one
//! level). From each page, links are followed breadth-first up to `depth`, only on the hosts of
//! the seeds (same host and port; redirects too), only where the host's robots.txt allows
//! (groups for `deepfeed` or `*`, Allow/Disallow with `*` and `$`, longest rule wins), at most
//! `rate` requests per second and `max_pages` pages. HTML goes through the HTML reader,
//! `text/plain` is kept as is. Provenance: `source` (the URL), `fetched_at` (UTC), `sha256`
//! (of the body). The HTTP client is ureq (rustls for `https://`).
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use regex::Regex;
use serde_json::{json, Map};

use super::{html, Output, Progress, SourceSummary};
use crate::error::{DataError, Result};

#[derive(Debug, Clone)]
pub struct CrawlOptions {
    /// A URL, a file of URLs, or a sitemap (file or URL).
    pub seed: String,
    /// Link depth followed from the seed pages (0: only the seeds).
    pub depth: usize,
    /// Most requests per second (robots.txt requests included).
    pub rate: f64,
    pub max_pages: usize,
    /// Largest body read, in bytes.
    pub max_bytes: u64,
    pub timeout: Duration,
    pub user_agent: String,
}

impl Default for CrawlOptions {
    fn default() -> Self {
        CrawlOptions {
            seed: String::new(),
            depth: 1,
            rate: 1.0,
            max_pages: 100,
            max_bytes: 20 << 20,
            timeout: Duration::from_secs(30),
            user_agent: format!("deepfeed/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// An absolute http(s) URL split in its parts (enough for crawling; no percent-decoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    /// host[:port], lower-cased
    pub authority: String,
    /// path and query, starting with '/'
    pub path: String,
}

impl Url {
    pub fn parse(s: &str) -> Option<Url> {
        let s = s.trim();
        let (scheme, rest) = s.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let rest = rest.split('#').next().unwrap_or("");
        let (auth, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if auth.is_empty() {
            return None;
        }
        let mut authority = auth.to_ascii_lowercase();
        if (scheme == "http" && authority.ends_with(":80")) || (scheme == "https" && authority.ends_with(":443")) {
            authority.truncate(authority.rfind(':').unwrap_or(authority.len()));
        }
        let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
        Some(Url { scheme, authority, path: normalize_path(&path) })
    }

    /// Resolves a link found on this page; `None` for other schemes (mailto:, javascript:…).
    pub fn join(&self, link: &str) -> Option<Url> {
        let link = link.trim();
        let link = link.split('#').next().unwrap_or("");
        if link.is_empty() {
            return None;
        }
        if link.contains("://") {
            return Url::parse(link);
        }
        if let Some(rest) = link.strip_prefix("//") {
            return Url::parse(&format!("{}://{rest}", self.scheme));
        }
        if link.split(['/', '?']).next().is_some_and(|first| first.contains(':')) {
            return None; // mailto:, javascript:, tel:
        }
        let path = if link.starts_with('/') {
            link.to_string()
        } else if link.starts_with('?') {
            format!("{}{link}", self.path.split('?').next().unwrap_or("/"))
        } else {
            let base = self.path.split('?').next().unwrap_or("/");
            format!("{}{link}", &base[..base.rfind('/').map_or(0, |i| i + 1)])
        };
        Some(Url { scheme: self.scheme.clone(), authority: self.authority.clone(), path: normalize_path(&path) })
    }

    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)
    }
}

/// Removes `.` and `..` segments of a path (the query is kept as is).
fn normalize_path(p: &str) -> String {
    let (path, query) = match p.find('?') {
        Some(i) => (&p[..i], &p[i..]),
        None => (p, ""),
    };
    let mut out: Vec<&str> = Vec::new();
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    for (i, s) in segs.iter().enumerate() {
        match *s {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
        if (*s == "." || *s == "..") && i == segs.len() - 1 {
            out.push("");
        }
    }
    format!("/{}{query}", out.join("/"))
}

/// The rules of robots.txt that apply to us.
#[derive(Debug, Default)]
pub struct Robots {
    rules: Vec<(bool, usize, Regex)>, // (allow, pattern length, matcher)
}

impl Robots {
    /// Parses robots.txt and keeps the group for `agent` (a token such as `deepfeed`), else `*`.
    pub fn parse(text: &str, agent: &str) -> Robots {
        let agent = agent.to_ascii_lowercase();
        let mut groups: Vec<(Vec<String>, Vec<(bool, String)>)> = Vec::new();
        let mut in_rules = true;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((k, v)) = line.split_once(':') else { continue };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "user-agent" => {
                    if in_rules || groups.is_empty() {
                        groups.push((Vec::new(), Vec::new()));
                    }
                    in_rules = false;
                    groups.last_mut().expect("pushed").0.push(v.to_ascii_lowercase());
                }
                "allow" | "disallow" => {
                    in_rules = true;
                    if let Some(g) = groups.last_mut() {
                        g.1.push((k == "allow", v.to_string()));
                    }
                }
                _ => {}
            }
        }
        let ours = groups.iter().find(|g| g.0.iter().any(|a| a != "*" && !a.is_empty() && agent.contains(a.as_str())));
        let group = ours.or_else(|| groups.iter().find(|g| g.0.iter().any(|a| a == "*")));
        let rules = group
            .map(|g| {
                g.1.iter()
                    .filter(|(_, p)| !p.is_empty())
                    .filter_map(|(allow, p)| {
                        let anchored = p.ends_with('$');
                        let body = p.trim_end_matches('$');
                        let re = format!("^{}{}", body.split('*').map(regex::escape).collect::<Vec<_>>().join(".*"), if anchored { "$" } else { "" });
                        Regex::new(&re).ok().map(|r| (*allow, p.len(), r))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Robots { rules }
    }

    /// Whether a path (with query) may be fetched: the longest matching rule decides, Allow
    /// winning a tie; no matching rule means allowed.
    pub fn allowed(&self, path: &str) -> bool {
        let mut best: Option<(usize, bool)> = None;
        for (allow, len, re) in &self.rules {
            if re.is_match(path) && best.is_none_or(|(l, a)| *len > l || (*len == l && *allow && !a)) {
                best = Some((*len, *allow));
            }
        }
        best.is_none_or(|(_, a)| a)
    }
}

/// The `<loc>` entries of a sitemap, and whether it is a sitemap index.
pub fn sitemap_locs(xml: &str) -> (Vec<String>, bool) {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"(?s)<loc>\s*(.*?)\s*</loc>").expect("static regex"));
    let locs = re.captures_iter(xml).map(|c| c[1].replace("&amp;", "&")).collect();
    (locs, xml.contains("<sitemapindex"))
}

fn is_sitemap(text: &str) -> bool {
    text.contains("<urlset") || text.contains("<sitemapindex")
}

/// UTC time as `2026-11-29T20:11:27Z`.
pub fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // civil from days (H. Hinnant)
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

struct Fetched {
    status: u16,
    content_type: String,
    location: Option<String>,
    body: Vec<u8>,
}

struct Client {
    agent: ureq::Agent,
    interval: Duration,
    last: Option<Instant>,
    max_bytes: u64,
}

impl Client {
    fn get(&mut self, url: &Url) -> std::result::Result<Fetched, String> {
        if let Some(last) = self.last {
            let next = last + self.interval;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
        self.last = Some(Instant::now());
        let mut resp = self.agent.get(url.to_string()).call().map_err(|e| format!("fetch failed: {e}"))?;
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(String::from);
        let (content_type, location) = (header("content-type").unwrap_or_default(), header("location"));
        let status = resp.status().as_u16();
        let body = if status == 200 {
            resp.body_mut().with_config().limit(self.max_bytes).read_to_vec().map_err(|e| format!("reading the body: {e}"))?
        } else {
            Vec::new()
        };
        Ok(Fetched { status, content_type, location, body })
    }
}

/// The seed URLs: from a URL, a file of URLs, or a sitemap (file or URL).
fn seeds(c: &CrawlOptions, client: &mut Client) -> Result<Vec<Url>> {
    let bad = |m: String| DataError::Invalid(format!("--crawl {}: {m}", c.seed));
    let mut sitemaps: Vec<String> = Vec::new();
    let mut urls: Vec<String> = Vec::new();
    if c.seed.contains("://") {
        let u = Url::parse(&c.seed).ok_or_else(|| bad("not an http(s) URL".into()))?;
        if u.path.split('?').next().unwrap_or("").ends_with(".xml") {
            let f = client.get(&u).map_err(bad)?;
            if f.status != 200 {
                return Err(bad(format!("the sitemap answered HTTP {}", f.status)));
            }
            sitemaps.push(String::from_utf8_lossy(&f.body).into_owned());
        } else {
            urls.push(c.seed.clone());
        }
    } else {
        let text = std::fs::read_to_string(Path::new(&c.seed)).map_err(|e| DataError::io(&c.seed, e))?;
        if is_sitemap(&text) {
            sitemaps.push(text);
        } else {
            urls.extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from));
        }
    }
    for sm in sitemaps {
        let (locs, index) = sitemap_locs(&sm);
        if index {
            for l in locs.iter().take(50) {
                let Some(u) = Url::parse(l) else { continue };
                if let Ok(f) = client.get(&u) {
                    if f.status == 200 {
                        urls.extend(sitemap_locs(&String::from_utf8_lossy(&f.body)).0);
                    }
                }
            }
        } else {
            urls.extend(locs);
        }
    }
    let mut out = Vec::new();
    for u in urls {
        out.push(Url::parse(&u).ok_or_else(|| bad(format!("{u:?} is not an http(s) URL")))?);
    }
    if out.is_empty() {
        return Err(bad("no URLs found".into()));
    }
    Ok(out)
}

pub(crate) fn crawl(c: &CrawlOptions, o: &mut Output, progress: &mut dyn Progress) -> Result<()> {
    if !(c.rate > 0.0) {
        return Err(DataError::Invalid(format!("--rate {}: expected requests per second > 0", c.rate)));
    }
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(c.timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(c.user_agent.as_str())
        .build();
    let mut client = Client { agent: config.into(), interval: Duration::from_secs_f64(1.0 / c.rate), last: None, max_bytes: c.max_bytes };
    let seeds = seeds(c, &mut client)?;
    let hosts: HashSet<String> = seeds.iter().map(|u| u.authority.clone()).collect();
    let mut robots: HashMap<String, Robots> = HashMap::new();
    let mut seen: HashSet<String> = seeds.iter().map(Url::to_string).collect();
    let mut queue: VecDeque<(Url, usize)> = seeds.into_iter().map(|u| (u, 0)).collect();
    let (mut fetched, mut other_host, mut beyond, mut redirects) = (0usize, 0usize, 0usize, 0usize);
    let agent_token = c.user_agent.split('/').next().unwrap_or("deepfeed").to_string();
    let start_sources = o.report.sources.len();
    while let Some((url, depth)) = queue.pop_front() {
        progress.total(o.report.sources.len() - start_sources + queue.len() + 1);
        if fetched >= c.max_pages {
            beyond += 1;
            continue;
        }
        let source = url.to_string();
        let r = robots.entry(url.authority.clone()).or_insert_with(|| {
            let robots_url = Url { scheme: url.scheme.clone(), authority: url.authority.clone(), path: "/robots.txt".into() };
            match client.get(&robots_url) {
                Ok(f) if f.status == 200 => Robots::parse(&String::from_utf8_lossy(&f.body), &agent_token),
                _ => Robots::default(), // none (or unreachable): everything allowed
            }
        });
        if !r.allowed(&url.path) {
            o.source(&source, "html", Map::new(), progress, |_| Err("not fetched: robots.txt disallows it".into()))?;
            continue;
        }
        fetched += 1;
        let f = match client.get(&url) {
            Ok(f) => f,
            Err(e) => {
                o.source(&source, "html", Map::new(), progress, |_| Err(e))?;
                continue;
            }
        };
        if (300..400).contains(&f.status) {
            redirects += 1;
            if let Some(target) = f.location.as_deref().and_then(|l| url.join(l)) {
                if !hosts.contains(&target.authority) {
                    other_host += 1;
                } else if seen.insert(target.to_string()) {
                    queue.push_front((target, depth));
                }
            }
            continue;
        }
        if f.status != 200 {
            o.source(&source, "html", Map::new(), progress, |_| Err(format!("HTTP {}", f.status)))?;
            continue;
        }
        let ct = f.content_type.to_ascii_lowercase();
        let looks_html = ct.contains("html") || (ct.is_empty() && f.body.iter().take(1024).any(|&b| b == b'<'));
        let mut base = Map::new();
        base.insert("source".into(), json!(source));
        base.insert("fetched_at".into(), json!(utc_now()));
        base.insert("sha256".into(), json!(super::sha256_hex(&f.body)));
        base.insert("format".into(), json!(if looks_html { "html" } else { "text" }));
        let page = html::decode_page(&f.body, Some(&f.content_type));
        if looks_html && depth < c.depth {
            for link in html::links(&page) {
                let Some(u) = url.join(&link) else { continue };
                if !hosts.contains(&u.authority) {
                    other_host += 1;
                } else if seen.insert(u.to_string()) {
                    queue.push_back((u, depth + 1));
                }
            }
        }
        let format = if looks_html { "html" } else { "text" };
        o.source(&source, format, base, progress, |sink| {
            if looks_html {
                sink.chunks(&html::html_to_text(&page)?, Map::new(), None)
            } else if ct.starts_with("text/") || ct.is_empty() {
                sink.chunks(&page, Map::new(), Some(0))
            } else {
                Err(format!("not HTML or text (content-type {ct})"))
            }
        })?;
    }
    let mut notes = Vec::new();
    if other_host > 0 {
        notes.push(format!("{other_host} link(s) to other hosts not followed"));
    }
    if beyond > 0 {
        notes.push(format!("{beyond} page(s) beyond --max-pages {} not fetched", c.max_pages));
    }
    if redirects > 0 {
        notes.push(format!("{redirects} redirect(s) followed on the same host"));
    }
    o.report.sources.push(SourceSummary { source: format!("crawl {}", c.seed), format: "crawl".into(), records: 0, error: None, notes });
    Ok(())
}
