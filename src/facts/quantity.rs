//! Kubernetes resource quantities ("250m", "1.5", "64Mi", "1e3"), held exactly
//! as thousandths so CPU and memory sums match what the scheduler computes.

use std::fmt;

/// A quantity in thousandths of its unit (millicores, millibytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(pub i128);

/// Text that is not a Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid quantity")]
pub struct InvalidQuantity(pub String);

impl Quantity {
    /// A quantity written as a JSON string or number; `None` for anything
    /// else or what does not parse.
    pub fn from_doc(v: &super::Doc<'_>) -> Option<Quantity> {
        match v {
            super::Doc::String(s) => Quantity::parse(s).ok(),
            super::Doc::Number(n) => Quantity::parse(&n.to_string()).ok(),
            _ => None,
        }
    }

    pub fn parse(s: &str) -> Result<Quantity, InvalidQuantity> {
        let bad = || InvalidQuantity(s.to_string());
        let s = s.trim();
        let (sign, body) = match s.as_bytes().first() {
            Some(b'-') => (-1, &s[1..]),
            Some(b'+') => (1, &s[1..]),
            _ => (1, s),
        };
        let num_end = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (number, suffix) = body.split_at(num_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(bad());
        }
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        // Only ASCII digits are left, and at most 30 of them fit an i128
        // with room for the scaling below.
        if int.len() + frac.len() > 30 {
            return Err(bad());
        }
        let mantissa = int
            .bytes()
            .chain(frac.bytes())
            .fold(0i128, |m, d| m * 10 + i128::from(d - b'0'));
        // value = mantissa * 2^binary * 10^decimal, in thousandths
        let (binary, decimal): (u32, i32) = match suffix {
            "" => (0, 0),
            "n" => (0, -9),
            "u" => (0, -6),
            "m" => (0, -3),
            "k" => (0, 3),
            "M" => (0, 6),
            "G" => (0, 9),
            "T" => (0, 12),
            "P" => (0, 15),
            "E" => (0, 18),
            "Ki" => (10, 0),
            "Mi" => (20, 0),
            "Gi" => (30, 0),
            "Ti" => (40, 0),
            "Pi" => (50, 0),
            "Ei" => (60, 0),
            e if e.starts_with(['e', 'E']) => {
                let exp: i32 = e[1..].parse().map_err(|_| bad())?;
                if !(-30..=30).contains(&exp) {
                    return Err(bad());
                }
                (0, exp)
            }
            _ => return Err(bad()),
        };
        let scale = decimal + 3 - frac.len() as i32;
        let mut value = mantissa.checked_mul(1i128 << binary).ok_or_else(bad)?;
        if scale >= 0 {
            value = value
                .checked_mul(10i128.checked_pow(scale as u32).ok_or_else(bad)?)
                .ok_or_else(bad)?;
        } else {
            let div = 10i128.checked_pow((-scale) as u32).ok_or_else(bad)?;
            // Kubernetes rounds fractions of the smallest unit up.
            value = (value + div - 1) / div;
        }
        Ok(Quantity(sign * value))
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::Add for Quantity {
    type Output = Quantity;
    fn add(self, o: Quantity) -> Quantity {
        Quantity(self.0.saturating_add(o.0))
    }
}

/// Formats a CPU quantity the way `kubectl` shows it: `750m`, `2`.
pub struct Cpu(pub Quantity);
/// Formats a memory quantity in the largest binary unit that divides it.
pub struct Memory(pub Quantity);

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0.0;
        if m % 1000 == 0 {
            write!(f, "{}", m / 1000)
        } else {
            write!(f, "{m}m")
        }
    }
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0.0.div_euclid(1000);
        if bytes == 0 {
            return write!(f, "0");
        }
        for (unit, shift) in [("Gi", 30), ("Mi", 20), ("Ki", 10)] {
            if bytes % (1 << shift) == 0 {
                return write!(f, "{}{unit}", bytes >> shift);
            }
        }
        write!(f, "{bytes}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_kubernetes_accepts() {
        let q = |s| Quantity::parse(s).unwrap().0;
        assert_eq!(q("250m"), 250);
        assert_eq!(q("1"), 1000);
        assert_eq!(q("1.5"), 1500);
        assert_eq!(q("0.1"), 100);
        assert_eq!(q("64Mi"), 64 * 1024 * 1024 * 1000);
        assert_eq!(q("1k"), 1_000_000);
        assert_eq!(q("1e3"), 1_000_000);
        assert_eq!(q("1E-3"), 1);
        assert_eq!(q("100n"), 1, "fractions of a thousandth round up");
        assert_eq!(q("0"), 0);
        for bad in ["", "m", "1.2.3", "abc", "1Zi", "1e99", "--1"] {
            assert!(Quantity::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn formats_like_kubectl() {
        assert_eq!(Cpu(Quantity(750)).to_string(), "750m");
        assert_eq!(Cpu(Quantity(2000)).to_string(), "2");
        assert_eq!(
            Memory(Quantity::parse("384Mi").unwrap()).to_string(),
            "384Mi"
        );
        assert_eq!(Memory(Quantity::parse("1Gi").unwrap()).to_string(), "1Gi");
        assert_eq!(Memory(Quantity::parse("1000").unwrap()).to_string(), "1000");
    }
}
