//! A plausible solar production curve: sun elevation from latitude, longitude and time, scaled
//! by a cloud-cover factor.

/// Sine of the sun's elevation at `unix_s` for a site at `lat_deg`, `lon_deg` (a standard
/// declination/hour-angle approximation, good to a degree or so).
pub fn sun_elevation_sin(lat_deg: f64, lon_deg: f64, unix_s: u64) -> f64 {
    let days = unix_s as f64 / 86_400.0;
    let day_of_year = days.rem_euclid(365.25);
    let declination = (-23.44f64).to_radians()
        * (2.0 * std::f64::consts::PI / 365.0 * (day_of_year + 10.0)).cos();
    let utc_hours = (unix_s % 86_400) as f64 / 3600.0;
    let solar_time = utc_hours + lon_deg / 15.0;
    let hour_angle = (15.0 * (solar_time - 12.0)).to_radians();
    let lat = lat_deg.to_radians();
    lat.sin() * declination.sin() + lat.cos() * declination.cos() * hour_angle.cos()
}

/// Energy in Wh a panel of `peak_w` produces over `interval_s` starting at `start_s`, given a
/// cloud cover in `[0, 1]` (1 = overcast, which still lets about a quarter through).
pub fn interval_energy_wh(
    peak_w: u64,
    lat_deg: f64,
    lon_deg: f64,
    start_s: u64,
    interval_s: u32,
    cloud: f64,
) -> u64 {
    let mid = start_s + u64::from(interval_s / 2);
    let elevation = sun_elevation_sin(lat_deg, lon_deg, mid).max(0.0);
    let clear_sky = elevation.powf(1.15); // air mass attenuation near the horizon
    let power_w = peak_w as f64 * clear_sky * (1.0 - 0.75 * cloud.clamp(0.0, 1.0));
    let wh = power_w * f64::from(interval_s) / 3600.0;
    // Never above capacity, even with rounding.
    (wh.floor() as u64).min(peak_w * u64::from(interval_s) / 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noon_beats_midnight_and_stays_within_capacity() {
        // 2026-06-21 in Munich (48.1 N, 11.6 E): solar noon near 11:14 UTC.
        let day = 1_781_913_600; // 2026-06-21T00:00:00Z
        let noon = interval_energy_wh(5000, 48.1, 11.6, day + 11 * 3600, 300, 0.0);
        let midnight = interval_energy_wh(5000, 48.1, 11.6, day, 300, 0.0);
        assert_eq!(midnight, 0);
        assert!(
            noon > 300,
            "noon output {noon} Wh should be near the 416 Wh cap"
        );
        assert!(noon <= 5000 * 300 / 3600);
        let cloudy = interval_energy_wh(5000, 48.1, 11.6, day + 11 * 3600, 300, 1.0);
        assert!(cloudy < noon / 2);
    }
}
