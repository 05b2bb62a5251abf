import CEDKernels
import Foundation
import XCTest

@testable import CED

/// The platform-dependent kernel choices and helpers (issue 20). The kernels themselves are
/// checked by the kernel tests for every entry of `available` (BLAS included where its
/// library loads) and, for arm64, by scripts/check_arm64.sh under qemu.
final class PlatformTests: XCTestCase {
    func testKernelFamiliesMatchTheCPU() {
        let features = Int(ced_cpu_features())
        #if arch(arm64)
        XCTAssertNotEqual(features & Int(CED_CPU_NEON), 0, "AArch64 always has Advanced SIMD")
        XCTAssertEqual(GEMMKernel.tileKernel, .neon)
        XCTAssertTrue(GEMMKernel.available.contains(.neon))
        XCTAssertEqual(Int8Kernel.available.contains(.dotprod), features & Int(CED_CPU_DOTPROD) != 0)
        XCTAssertEqual(Int8Kernel.available.contains(.i8mm), features & Int(CED_CPU_I8MM) != 0)
        XCTAssertEqual(BF16Kernel.available.contains(.bfdot), features & Int(CED_CPU_BF16) != 0)
        XCTAssertFalse(GEMMKernel.available.contains(.avx512) || GEMMKernel.available.contains(.avx2))
        #else
        XCTAssertEqual(features & Int(CED_CPU_NEON | CED_CPU_DOTPROD | CED_CPU_I8MM | CED_CPU_BF16), 0)
        XCTAssertFalse(GEMMKernel.available.contains(.neon))
        XCTAssertFalse(Int8Kernel.available.contains(.dotprod) || Int8Kernel.available.contains(.i8mm))
        XCTAssertFalse(BF16Kernel.available.contains(.bfdot) || BF16Kernel.available.contains(.bfmmla))
        #endif
        XCTAssertEqual(GEMMKernel.available.last, .portable)
        XCTAssertTrue(GEMMKernel.available.contains(GEMMKernel.best))
    }

    func testExtensionsCanBeMaskedAndRestored() {
        let features = ced_cpu_features()
        ced_cpu_mask_features(Int32(CED_CPU_DOTPROD | CED_CPU_I8MM | CED_CPU_BF16))
        let masked = ced_cpu_features()
        ced_cpu_mask_features(0)
        XCTAssertEqual(masked & Int32(CED_CPU_DOTPROD | CED_CPU_I8MM | CED_CPU_BF16), 0)
        XCTAssertEqual(masked | Int32(CED_CPU_DOTPROD | CED_CPU_I8MM | CED_CPU_BF16),
                       features | Int32(CED_CPU_DOTPROD | CED_CPU_I8MM | CED_CPU_BF16))
        XCTAssertEqual(ced_cpu_features(), features)
    }

    func testBLASPathLoadsItsLibraryAndNamesIt() throws {
        #if os(Linux)
        // CI installs Debian's libopenblas0 (.ci/run), so the BLAS path is tested there.
        if ProcessInfo.processInfo.environment["CI"] != nil {
            XCTAssertTrue(GEMMKernel.available.contains(.blas), "CI must have OpenBLAS (libopenblas0) for the blas kernel")
        }
        #endif
        guard GEMMKernel.available.contains(.blas) else { throw XCTSkip("no BLAS library here") }
        XCTAssertFalse(String(cString: ced_blas_name()).isEmpty)
        XCTAssertTrue(GEMMKernel.blas.pathName.hasPrefix("blas (") && GEMMKernel.blas.pathName.contains("tiles"),
                      GEMMKernel.blas.pathName)
        XCTAssertEqual(GEMMKernel.blas.tile, GEMMKernel.tileKernel)
        XCTAssertEqual(GEMMKernel.blas.mr, GEMMKernel.tileKernel.mr)
        #if canImport(Darwin)
        XCTAssertEqual(GEMMKernel.defaultKernel, .blas, "Accelerate is the default on Apple platforms")
        #else
        XCTAssertEqual(GEMMKernel.defaultKernel, GEMMKernel.tileKernel, "BLAS is opt-in on Linux")
        #endif
        // A product through cblas_sgemm with both operands transposed, against float64.
        let m = 7, n = 5, k = 9
        var rng = SystemRandomNumberGenerator()
        let a = (0..<k * m).map { _ in Float.random(in: -1...1, using: &rng) }   // stored k×m (transA)
        let b = (0..<n * k).map { _ in Float.random(in: -1...1, using: &rng) }   // stored n×k (transB)
        var c = [Float](repeating: 2, count: m * n)
        ced_blas_sgemm(1, 1, Int64(m), Int64(n), Int64(k), 0.5, a, Int64(m), b, Int64(k), 1, &c, Int64(n))
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k { s += Double(a[p * m + i]) * Double(b[j * k + p]) }
                XCTAssertEqual(Double(c[i * n + j]), 0.5 * s + 2, accuracy: 1e-5)
            }
        }
    }

    func testSubprocessesAndPaths() throws {
        #if os(macOS) || os(Linux)
        XCTAssertTrue(CedPlatform.hasSubprocesses)
        let p = try Subprocess(executable: "/bin/sh", arguments: ["-c", "exit 3"], pipeStdout: true, stderr: .inherit)
        XCTAssertEqual(p.wait(), 3)
        // Standard input, output and error through pipes: the child reverses what it reads
        // and reports its byte count on standard error.
        let q = try Subprocess(executable: "/bin/sh", arguments: ["-c", "tr a-z A-Z; echo done >&2"], pipeStdout: true,
                               stderr: .pipe, pipeStdin: true)
        Subprocess.write(Data("hello pipes".utf8), to: q.stdinHandle!)
        let out = FileHandle(fileDescriptor: q.stdoutDescriptor, closeOnDealloc: false).readDataToEndOfFile()
        let err = q.stderrHandle!.readDataToEndOfFile()
        XCTAssertEqual(q.wait(), 0)
        XCTAssertEqual(String(decoding: out, as: UTF8.self), "HELLO PIPES")
        XCTAssertEqual(String(decoding: err, as: UTF8.self), "done\n")
        #else
        XCTAssertFalse(CedPlatform.hasSubprocesses)
        XCTAssertThrowsError(try Subprocess(executable: "/bin/sh", arguments: [], pipeStdout: true, stderr: nil))
        #endif
        XCTAssertEqual(CedPlatform.homeDirectory(environment: ["HOME": "/some/home"]).path, "/some/home")
        XCTAssertEqual(CedPlatform.homeDirectory(environment: ["HOME": ""]).path, NSHomeDirectory())
        XCTAssertEqual(EmbeddingCache.defaultDirectory(environment: ["HOME": "/h"]).path,
                       "/h/" + CedPlatform.cacheSubdirectory + "/ced/embeddings")
    }
}
