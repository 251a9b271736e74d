//! A blend: each part's scores are standardized per user (zero mean, unit variance over the
//! catalogue) and summed with weights, so models on different scales combine fairly.

use crate::Scorer;

/// Weighted parts.
pub struct Blend {
    parts: Vec<(Box<dyn Scorer>, f32)>,
}

impl Blend {
    /// A blend of scorers with weights.
    pub fn new(parts: Vec<(Box<dyn Scorer>, f32)>) -> Self {
        Self { parts }
    }
}

fn standardize(scores: &mut [f32]) {
    let n = scores.len().max(1) as f32;
    let mean = scores.iter().sum::<f32>() / n;
    let var = scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f32>() / n;
    let sd = var.sqrt().max(1e-12);
    scores.iter_mut().for_each(|s| *s = (*s - mean) / sd);
}

impl Scorer for Blend {
    fn name(&self) -> &'static str {
        "blend"
    }
    fn score(&self, history: &[u32], scores: &mut [f32]) {
        scores.iter_mut().for_each(|s| *s = 0.0);
        let mut part_scores = vec![0f32; scores.len()];
        for (part, weight) in &self.parts {
            part.score(history, &mut part_scores);
            standardize(&mut part_scores);
            for (s, p) in scores.iter_mut().zip(&part_scores) {
                *s += weight * p;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<f32>);
    impl Scorer for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        fn score(&self, _: &[u32], scores: &mut [f32]) {
            scores.copy_from_slice(&self.0);
        }
    }

    #[test]
    fn parts_are_standardized_before_weighting() {
        let blend = Blend::new(vec![
            (Box::new(Fixed(vec![0.0, 1000.0, 2000.0])), 1.0),
            (Box::new(Fixed(vec![0.3, 0.2, 0.1])), 1.0),
        ]);
        let mut scores = vec![0.0; 3];
        blend.score(&[], &mut scores);
        // Equal and opposite after standardization: the blend is flat.
        assert!(scores.iter().all(|s| s.abs() < 1e-5), "{scores:?}");
    }
}
