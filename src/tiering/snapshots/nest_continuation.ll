; ModuleID = 'job'
source_filename = "nest.ll"

declare void @scale(ptr, i64, i64)

define void @scale.osr(ptr %0) {
osr.entry:
  %tj.demoted = alloca i64, align 8
  %tj.demoted10 = alloca i64, align 8
  %tj.demoted12 = alloca i64, align 8
  %tj.demoted13 = alloca i64, align 8
  %osr.field = getelementptr inbounds { i64, ptr, i64, i64, i64 }, ptr %0, i32 0, i32 0
  %osr.live = load i64, ptr %osr.field, align 4
  %osr.field1 = getelementptr inbounds { i64, ptr, i64, i64, i64 }, ptr %0, i32 0, i32 1
  %osr.live2 = load ptr, ptr %osr.field1, align 8
  %osr.field3 = getelementptr inbounds { i64, ptr, i64, i64, i64 }, ptr %0, i32 0, i32 2
  %osr.live4 = load i64, ptr %osr.field3, align 4
  %osr.field5 = getelementptr inbounds { i64, ptr, i64, i64, i64 }, ptr %0, i32 0, i32 3
  %osr.live6 = load i64, ptr %osr.field5, align 4
  %osr.field7 = getelementptr inbounds { i64, ptr, i64, i64, i64 }, ptr %0, i32 0, i32 4
  %osr.live8 = load i64, ptr %osr.field7, align 4
  %osr.demoted = alloca i64, align 8
  store i64 %osr.live8, ptr %osr.demoted, align 4
  %osr.sp = call ptr @llvm.stacksave.p0()
  store i64 %osr.live, ptr %tj.demoted10, align 4
  br label %osr.peel0.b6

entry:                                            ; No predecessors!
  %np = icmp sgt i64 %osr.live4, 0
  br i1 %np, label %outer.preheader, label %entry.exit_crit_edge

entry.exit_crit_edge:                             ; preds = %entry
  br label %exit

outer.preheader:                                  ; preds = %entry
  store i64 0, ptr %tj.demoted, align 4
  br label %outer

outer:                                            ; preds = %osr.peel0.b10, %outer.latch.outer_crit_edge, %outer.preheader
  %tj.phi = load i64, ptr %tj.demoted, align 4
  store i64 %tj.phi, ptr %osr.demoted, align 4
  %mp = icmp sgt i64 %osr.live6, 0
  br i1 %mp, label %inner.preheader, label %outer.outer.latch_crit_edge

outer.outer.latch_crit_edge:                      ; preds = %outer
  br label %outer.latch

inner.preheader:                                  ; preds = %outer
  store i64 0, ptr %tj.demoted10, align 4
  br label %inner

inner:                                            ; preds = %inner.inner_crit_edge, %inner.preheader
  %tj.phi11 = load i64, ptr %tj.demoted10, align 4
  %osr.reload = load i64, ptr %osr.demoted, align 4
  %row = mul nsw i64 %osr.reload, %osr.live6
  %idx = add nsw i64 %row, %tj.phi11
  %p = getelementptr inbounds double, ptr %osr.live2, i64 %idx
  %v = load double, ptr %p, align 8
  %w = fmul double %v, 2.000000e+00
  store double %w, ptr %p, align 8
  %j.next = add nuw nsw i64 %tj.phi11, 1
  store i64 %j.next, ptr %tj.demoted12, align 4
  %jd = icmp eq i64 %j.next, %osr.live6
  br i1 %jd, label %outer.latch.loopexit, label %inner.inner_crit_edge

inner.inner_crit_edge:                            ; preds = %inner
  %tj.reload = load i64, ptr %tj.demoted12, align 4
  store i64 %tj.reload, ptr %tj.demoted10, align 4
  br label %inner

outer.latch.loopexit:                             ; preds = %inner
  br label %outer.latch

outer.latch:                                      ; preds = %outer.latch.loopexit, %outer.outer.latch_crit_edge
  %osr.reload9 = load i64, ptr %osr.demoted, align 4
  %i.next = add nuw nsw i64 %osr.reload9, 1
  store i64 %i.next, ptr %tj.demoted13, align 4
  %id = icmp eq i64 %i.next, %osr.live4
  br i1 %id, label %exit.loopexit, label %outer.latch.outer_crit_edge

outer.latch.outer_crit_edge:                      ; preds = %outer.latch
  %tj.reload14 = load i64, ptr %tj.demoted13, align 4
  store i64 %tj.reload14, ptr %tj.demoted, align 4
  br label %outer

exit.loopexit:                                    ; preds = %osr.peel0.b9, %outer.latch
  br label %exit

exit:                                             ; preds = %exit.loopexit, %entry.exit_crit_edge
  ret void

osr.peel0.b3:                                     ; No predecessors!
  %1 = load i64, ptr %tj.demoted, align 4
  store i64 %1, ptr %osr.demoted, align 4
  %2 = icmp sgt i64 %osr.live6, 0
  br i1 %2, label %osr.peel0.b5, label %osr.peel0.b4

osr.peel0.b4:                                     ; preds = %osr.peel0.b3
  br label %osr.peel0.b9

osr.peel0.b5:                                     ; preds = %osr.peel0.b3
  store i64 0, ptr %tj.demoted10, align 4
  br label %osr.peel0.b6

osr.peel0.b6:                                     ; preds = %osr.entry, %osr.peel0.b7, %osr.peel0.b5
  %3 = load i64, ptr %tj.demoted10, align 4
  %4 = load i64, ptr %osr.demoted, align 4
  %5 = mul nsw i64 %4, %osr.live6
  %6 = add nsw i64 %5, %3
  %7 = getelementptr inbounds double, ptr %osr.live2, i64 %6
  %8 = load double, ptr %7, align 8
  %9 = fmul double %8, 2.000000e+00
  store double %9, ptr %7, align 8
  %10 = add nuw nsw i64 %3, 1
  store i64 %10, ptr %tj.demoted12, align 4
  %11 = icmp eq i64 %10, %osr.live6
  br i1 %11, label %osr.peel0.b8, label %osr.peel0.b7

osr.peel0.b7:                                     ; preds = %osr.peel0.b6
  %12 = load i64, ptr %tj.demoted12, align 4
  store i64 %12, ptr %tj.demoted10, align 4
  br label %osr.peel0.b6

osr.peel0.b8:                                     ; preds = %osr.peel0.b6
  br label %osr.peel0.b9

osr.peel0.b9:                                     ; preds = %osr.peel0.b8, %osr.peel0.b4
  %13 = load i64, ptr %osr.demoted, align 4
  %14 = add nuw nsw i64 %13, 1
  store i64 %14, ptr %tj.demoted13, align 4
  %15 = icmp eq i64 %14, %osr.live4
  br i1 %15, label %exit.loopexit, label %osr.peel0.b10

osr.peel0.b10:                                    ; preds = %osr.peel0.b9
  %16 = load i64, ptr %tj.demoted13, align 4
  store i64 %16, ptr %tj.demoted, align 4
  br label %outer
}

; Function Attrs: nocallback nofree nosync nounwind willreturn
declare ptr @llvm.stacksave.p0() #0

attributes #0 = { nocallback nofree nosync nounwind willreturn }
