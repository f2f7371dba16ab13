//! Sampling of one step's logits for all running sequences, in batched calls.

use super::*;

impl Engine<'_> {
    /// Samples the audio column of every job with audio logits in ONE call over all their rows
    /// (`[jobs * num_codebooks, codebook_rows]`), then the RAS re-draws of all of them in one more
    /// call. Uniforms come from each sequence's own RNG in the same order as a lone sequence
    /// draws them (its columns, then its re-draws), so batching never changes a sequence's codes.
    pub(super) fn sample_audio(
        &mut self,
        logits: &Option<Tensor>,
        jobs: &[(usize, Option<usize>, Option<usize>)],
    ) -> Result<Vec<Option<Vec<u32>>>, GenerationError> {
        let internal = |e: candle_core::Error| GenerationError::Internal(e.to_string());
        let mut res: Vec<Option<Vec<u32>>> = vec![None; jobs.len()];
        let with: Vec<(usize, usize)> = jobs
            .iter()
            .enumerate()
            .filter_map(|(j, &(_, _, a))| a.map(|r| (j, r)))
            .collect();
        let Some(l) = logits else {
            return Ok(res);
        };
        if with.is_empty() {
            return Ok(res);
        }
        let (n_rows, nc, v) = l.dims3().map_err(internal)?;
        let rows: Vec<u32> = with.iter().map(|&(_, r)| r as u32).collect();
        let in_order = rows.len() == n_rows && rows.iter().enumerate().all(|(k, &r)| r == k as u32);
        let sel = if in_order {
            l.clone()
        } else {
            let idx = Tensor::from_vec(rows, with.len(), l.device()).map_err(internal)?;
            l.index_select(&idx, 0).map_err(internal)?
        };
        let flat = sel.reshape((with.len() * nc, v)).map_err(internal)?;
        let mut params = Vec::with_capacity(with.len() * nc);
        let mut us = Vec::with_capacity(with.len() * nc);
        for &(j, _) in &with {
            let a = &mut self.active[jobs[j].0];
            for _ in 0..nc {
                params.push(a.req.params.sampling);
                us.push(a.rng.uniform());
            }
        }
        let ids =
            sample_rows_with(&flat, &params, &us, self.cfg.device_sampler).map_err(internal)?;
        let mut cols: Vec<Vec<u32>> = ids.chunks(nc).map(<[u32]>::to_vec).collect();
        let mut ras: Vec<(usize, usize)> = Vec::new();
        let mut ras_us = Vec::new();
        for (w, &(j, _)) in with.iter().enumerate() {
            let a = &mut self.active[jobs[j].0];
            for k in a.chunk.state.ras_rows(&cols[w], &a.req.params.ras) {
                ras.push((w, k));
                ras_us.push(a.rng.uniform());
            }
        }
        if !ras.is_empty() {
            let idx: Vec<u32> = ras.iter().map(|&(w, k)| (w * nc + k) as u32).collect();
            let idx = Tensor::from_vec(idx, ras.len(), flat.device()).map_err(internal)?;
            let sel = flat.index_select(&idx, 0).map_err(internal)?;
            let raw = vec![
                SamplingParams {
                    temperature: 1.0,
                    top_k: None,
                    top_p: 1.0,
                };
                ras.len()
            ];
            let ids =
                sample_rows_with(&sel, &raw, &ras_us, self.cfg.device_sampler).map_err(internal)?;
            for (&(w, k), id) in ras.iter().zip(ids) {
                cols[w][k] = id;
            }
        }
        for (w, &(j, _)) in with.iter().enumerate() {
            res[j] = Some(std::mem::take(&mut cols[w]));
        }
        Ok(res)
    }

    /// Samples the text token of every job in text mode (text logits and no audio column) in ONE
    /// call: one gather of their rows and one host copy (text rows are sampled on the host, see
    /// `sampling::DEVICE_SORT_MAX_COLS`), instead of a copy and a device sync per sequence.
    /// Each sequence draws one uniform from its own RNG, as when it runs alone.
    pub(super) fn sample_text(
        &mut self,
        logits: &Option<Tensor>,
        jobs: &[(usize, Option<usize>, Option<usize>)],
        audio_cols: &[Option<Vec<u32>>],
    ) -> Result<Vec<Option<u32>>, GenerationError> {
        let internal = |e: candle_core::Error| GenerationError::Internal(e.to_string());
        let mut res = vec![None; jobs.len()];
        let Some(l) = logits else {
            return Ok(res);
        };
        let with: Vec<(usize, u32)> = jobs
            .iter()
            .zip(audio_cols)
            .enumerate()
            .filter_map(|(j, (&(_, t, _), col))| match (t, col) {
                (Some(r), None) => Some((j, r as u32)),
                _ => None,
            })
            .collect();
        if with.is_empty() {
            return Ok(res);
        }
        let idx: Vec<u32> = with.iter().map(|&(_, r)| r).collect();
        let idx = Tensor::from_vec(idx, with.len(), l.device()).map_err(internal)?;
        let sel = l.index_select(&idx, 0).map_err(internal)?;
        let mut params = Vec::with_capacity(with.len());
        let mut us = Vec::with_capacity(with.len());
        for &(j, _) in &with {
            let a = &mut self.active[jobs[j].0];
            params.push(a.req.params.sampling);
            us.push(a.rng.uniform());
        }
        let ids =
            sample_rows_with(&sel, &params, &us, self.cfg.device_sampler).map_err(internal)?;
        for (&(j, _), id) in with.iter().zip(ids) {
            res[j] = Some(id);
        }
        Ok(res)
    }
}
