//! Hands out GPU slots: each listed GPU takes up to `per_gpu` trials at once.

use crate::study::Devices;

#[derive(Debug)]
pub struct DevicePool {
    /// (GPU id, trials on it now); empty means CPU only.
    slots: Vec<(String, u32)>,
    per_gpu: u32,
}

impl DevicePool {
    pub fn new(devices: &Devices) -> DevicePool {
        DevicePool { slots: devices.gpus.iter().map(|g| (g.clone(), 0)).collect(), per_gpu: devices.per_gpu }
    }

    /// How many trials can run at once with `parallel` asked for.
    pub fn capacity(&self, parallel: u32) -> u32 {
        if self.slots.is_empty() {
            parallel
        } else {
            parallel.min(self.slots.len() as u32 * self.per_gpu)
        }
    }

    /// The least-loaded GPU with room (Some(None) on a CPU-only study); None if all are full.
    pub fn acquire(&mut self) -> Option<Option<String>> {
        if self.slots.is_empty() {
            return Some(None);
        }
        let (id, load) =
            self.slots.iter_mut().filter(|(_, load)| *load < self.per_gpu).min_by_key(|(_, load)| *load)?;
        *load += 1;
        Some(Some(id.clone()))
    }

    pub fn release(&mut self, device: Option<&str>) {
        if let Some(slot) = device.and_then(|d| self.slots.iter_mut().find(|(id, _)| id == d)) {
            slot.1 = slot.1.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_trials_over_gpus_up_to_per_gpu() {
        let mut pool = DevicePool::new(&Devices { gpus: vec!["0".into(), "1".into()], per_gpu: 2 });
        assert_eq!(pool.capacity(8), 4);
        let got: Vec<_> = (0..4).map(|_| pool.acquire().unwrap().unwrap()).collect();
        assert_eq!(got, ["0", "1", "0", "1"]);
        assert_eq!(pool.acquire(), None);
        pool.release(Some("1"));
        assert_eq!(pool.acquire(), Some(Some("1".into())));
    }

    #[test]
    fn cpu_only_is_bounded_by_parallel() {
        let mut pool = DevicePool::new(&Devices { gpus: vec![], per_gpu: 1 });
        assert_eq!(pool.capacity(3), 3);
        assert_eq!(pool.acquire(), Some(None));
    }
}
