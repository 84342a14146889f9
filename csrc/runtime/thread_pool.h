// Runtime layer: a persistent pool of worker threads.
//
// `run(n, fn)` calls fn(0) .. fn(n-1), each exactly once, fn(0) on the
// calling thread, and returns when all are done.  Work is split by the caller
// into one task per thread (static partition keeps each core on the same
// block of packed weights, which then stays in its L2).  The split is read
// from num_threads() before run() takes the pool, so the pool may have shrunk
// in between (set_num_threads from another thread): then thread t also runs
// parts t + T, t + 2T, ... of the T it has, and no part is ever dropped.
// Jobs from several threads run one after another; a resize waits for the
// job in flight; a part that calls run() itself runs those parts inline.  A
// part that throws ends its thread's share of the job; run() waits for the
// other threads, then rethrows the first exception.  Workers spin briefly
// after a job before sleeping, so back-to-back calls do not pay a wake-up.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace eb {

class ThreadPool {
 public:
  static ThreadPool& instance();

  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Lock-free: a caller sizing its split does not wait for another's job.
  int num_threads() const { return num_threads_.load(std::memory_order_relaxed); }
  void set_num_threads(int n);  // n >= 1
  void run(int n, const std::function<void(int)>& fn);

 private:
  ThreadPool();
  void start_workers(int count);
  void stop_workers();
  void worker_loop(int index, unsigned long seen);
  void run_parts(int first) noexcept;

  std::mutex run_mutex_;  // one job at a time; guards resizing too
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  int job_parts_ = 0;    // fn(0) .. fn(job_parts_ - 1)
  int job_threads_ = 0;  // thread t runs parts t, t + job_threads_, ...
  std::atomic<unsigned long> generation_{0};  // written under mutex_, read by spinning workers
  int pending_ = 0;
  std::exception_ptr error_;  // the first part that threw, rethrown by run()
  bool stop_ = false;
  std::atomic<int> num_threads_{1};  // written under run_mutex_ (with workers_)
};

// Default thread count: EIGHTBIT_NUM_THREADS is read by the Python layer;
// here, the hardware's concurrency.
int default_num_threads();

// Splits [0, n) into one contiguous range per thread, using only as many
// threads as get at least `min_work_per_thread` units of work each (n items
// of `work_per_item` units): below that, a wake-up costs more than it saves.
template <typename Fn>
void parallel_for(int64_t n, int64_t work_per_item, int64_t min_work_per_thread, Fn&& fn) {
  const double work = static_cast<double>(n) * static_cast<double>(work_per_item > 1 ? work_per_item : 1);
  const double wanted = work / static_cast<double>(min_work_per_thread);
  const int pool = ThreadPool::instance().num_threads();
  const int threads = wanted < 1.0 ? 1 : (wanted > pool ? pool : static_cast<int>(wanted));
  if (threads <= 1 || n < threads) {
    fn(int64_t{0}, n);
    return;
  }
  ThreadPool::instance().run(threads, [&](int t) { fn(n * t / threads, n * (t + 1) / threads); });
}

}  // namespace eb
