import Foundation

/// Summary of one series of timings, in microseconds.
struct Summary: Encodable, Sendable {
    let samples: Int
    let medianUs: Double
    let p99Us: Double
    let meanUs: Double
    let minUs: Double
    let maxUs: Double

    enum CodingKeys: String, CodingKey {
        case samples
        case medianUs = "median_us"
        case p99Us = "p99_us"
        case meanUs = "mean_us"
        case minUs = "min_us"
        case maxUs = "max_us"
    }

    /// Nearest-rank percentiles over nanosecond samples (the same definition pyjwt_bench.py uses).
    init(nanoseconds: [Double]) {
        precondition(!nanoseconds.isEmpty, "no samples")
        let sorted = nanoseconds.sorted()
        func percentile(_ p: Double) -> Double {
            let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
            return sorted[min(max(rank, 1), sorted.count) - 1]
        }
        samples = sorted.count
        medianUs = percentile(50) / 1000
        p99Us = percentile(99) / 1000
        meanUs = sorted.reduce(0, +) / Double(sorted.count) / 1000
        minUs = sorted.first! / 1000
        maxUs = sorted.last! / 1000
    }
}

extension Duration {
    /// The duration in nanoseconds.
    var nanoseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1e9 + Double(attoseconds) / 1e9
    }
}

/// Keeps results alive so the optimizer cannot drop the work being timed.
nonisolated(unsafe) var blackHole = 0

@inline(never)
func consume(_ value: Int) {
    blackHole &+= value
}

/// Writes a line to standard error (progress; standard output stays for results).
func note(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// A failure that ends the run with a non-zero status.
struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
