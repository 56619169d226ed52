//! Scraping `GET /metrics` and reading one series out of the text.

use crate::app::TestApp;

/// One scrape of `GET /metrics`.
pub struct Scrape(pub String);

impl Scrape {
    /// The value of an unlabelled series (`name value`) or of a labelled
    /// one given with its labels (`name{a="x"}`); panics when it is absent.
    pub fn value(&self, series: &str) -> f64 {
        self.0
            .lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} missing from:\n{}", self.0))
    }
}

impl TestApp {
    pub async fn metrics(&self) -> Scrape {
        let response = self.http.get(format!("{}/metrics", self.address)).send().await;
        let text = match response {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(e) => panic!("GET /metrics: {e}"),
        };
        Scrape(text)
    }
}
